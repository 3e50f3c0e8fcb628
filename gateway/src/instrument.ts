// Loaded first by main.ts: tracing must patch grpc-js and http before they are required.
import { startTelemetry } from "../../platform/telemetry/start";
import { SERVICE_NAME } from "./service-name";

export const telemetry = startTelemetry(SERVICE_NAME);
