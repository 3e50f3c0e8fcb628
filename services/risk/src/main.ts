import { telemetry } from "./instrument";
import { runServiceProcess } from "../../../platform/service-process";
import { riskConfig } from "./config";
import { startRiskService } from "./service";
import { SERVICE_NAME } from "./service-name";

runServiceProcess(SERVICE_NAME, telemetry, riskConfig, startRiskService);
