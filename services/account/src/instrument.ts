// Loaded first by main.ts: tracing must patch grpc-js and http before they are required.
import { startTelemetry } from "../../../platform/telemetry/start";
import { SERVICE_NAME } from "./service-name";

// Where Prometheus finds this service's metrics unless METRICS_PORT says otherwise.
const METRICS_PORT = 9465;

export const telemetry = startTelemetry(SERVICE_NAME, METRICS_PORT);
