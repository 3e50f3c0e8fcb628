import { telemetry } from "./instrument";
import { runServiceProcess } from "../../../platform/service-process";
import { accountConfig } from "./config";
import { startAccountService } from "./service";
import { SERVICE_NAME } from "./service-name";

runServiceProcess(SERVICE_NAME, telemetry, accountConfig, startAccountService);
