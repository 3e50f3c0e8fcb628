import { telemetry } from "./instrument";
import { runServiceProcess } from "../../../platform/service-process";
import { transactionsConfig } from "./config";
import { startTransactionsService } from "./service";
import { SERVICE_NAME } from "./service-name";

runServiceProcess(SERVICE_NAME, telemetry, transactionsConfig, startTransactionsService);
