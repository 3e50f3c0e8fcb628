import { hostname } from "node:os";
import { diag, DiagLogLevel } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { GrpcInstrumentation } from "@opentelemetry/instrumentation-grpc";
import { HttpInstrumentation } from "@opentelemetry/instrumentation-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { telemetryConfig } from "../config";

export interface Telemetry {
  shutdown(): Promise<void>;
}

/**
 * Starts the OpenTelemetry SDK. It must run before grpc-js and http are first
 * required, so each service's main.ts imports its instrument.ts first.
 * Spans leave in batches over OTLP/HTTP; an unreachable collector costs
 * dropped spans, never a failed or slower request.
 */
export function startTelemetry(serviceName: string, serviceVersion = "0.1.0"): Telemetry {
  const config = telemetryConfig();
  if (config.OTEL_SDK_DISABLED) return { shutdown: async () => {} };
  diag.setLogger({ error: () => {}, warn: () => {}, info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.NONE);
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({
      "service.name": serviceName,
      "service.version": serviceVersion,
      "service.namespace": "tally",
      "service.instance.id": config.SERVICE_INSTANCE_ID ?? `${hostname()}-${process.pid}`,
    }),
    traceExporter: new OTLPTraceExporter({ url: `${config.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, "")}/v1/traces` }),
    instrumentations: [new GrpcInstrumentation(), new HttpInstrumentation()],
  });
  sdk.start();
  return { shutdown: () => sdk.shutdown().catch(() => {}) };
}
