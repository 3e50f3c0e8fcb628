import { telemetry } from "./instrument";
import { runServiceProcess } from "../../platform/service-process";
import { gatewayConfig } from "./config";
import { startGateway } from "./gateway";
import { SERVICE_NAME } from "./service-name";

runServiceProcess(SERVICE_NAME, telemetry, gatewayConfig, startGateway);
