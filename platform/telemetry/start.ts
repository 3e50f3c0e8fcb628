import { hostname } from "node:os";
import { diag, DiagLogLevel } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { GrpcInstrumentation } from "@opentelemetry/instrumentation-grpc";
import { HttpInstrumentation } from "@opentelemetry/instrumentation-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { NodeSDK } from "@opentelemetry/sdk-node";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  ConsoleSpanExporter,
  NoopSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type Sampler,
  type SpanExporter,
} from "@opentelemetry/sdk-trace";
import { telemetryConfig, type TelemetryConfig } from "../config";
import { serveMetrics, type MetricsServer } from "./metrics-server";
import type { Logger } from "../logger";

export interface Telemetry {
  /** Serves /metrics for Prometheus, or nothing when telemetry is off. */
  serveMetrics(log: Logger): Promise<MetricsServer | undefined>;
  /** Flushes the spans still queued; bounded, so an absent collector cannot hold up an exit. */
  shutdown(): Promise<void>;
}

const SHUTDOWN_LIMIT_MS = 3000;

/**
 * Starts the OpenTelemetry SDK. It must run before grpc-js and http are first
 * required, so each process's main.ts imports its instrument.ts first.
 * Spans leave in batches in the background; an unreachable collector costs
 * dropped spans, never a failed or slower request.
 */
export function startTelemetry(serviceName: string, defaultMetricsPort: number, serviceVersion = "0.1.0"): Telemetry {
  const config = readConfig(defaultMetricsPort);
  if (config.OTEL_SDK_DISABLED) return { serveMetrics: async () => undefined, shutdown: async () => {} };
  // The SDK's own complaints (a collector that is down) would flood the JSON logs.
  diag.setLogger({ error: () => {}, warn: () => {}, info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.NONE);
  const prometheus = new PrometheusExporter({ preventServerStart: true });
  const exporter = traceExporter(config);
  const collector = exporter ? collectorAddress(config) : undefined;
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({
      "service.name": serviceName,
      "service.version": serviceVersion,
      "service.namespace": "tally",
      "service.instance.id": config.SERVICE_INSTANCE_ID ?? `${hostname()}-${process.pid}`,
    }),
    autoDetectResources: false,
    // Batched (OTEL_BSP_* tune the batches). With none, spans are made and dropped: trace ids still reach logs and X-Trace-Id.
    ...(exporter ? { traceExporter: exporter } : { spanProcessors: [new NoopSpanProcessor()] }),
    sampler: sampler(config),
    // W3C trace context only: no baggage from callers rides along into services, outbox rows and messages.
    textMapPropagator: new W3CTraceContextPropagator(),
    metricReaders: [prometheus],
    // Logs go to stdout as JSON, not through OpenTelemetry.
    logRecordProcessors: [],
    instrumentations: [
      new GrpcInstrumentation(),
      // Outgoing HTTP only (JWKS fetches), not the exports themselves: the gateway makes its own server spans, for every protocol alike.
      new HttpInstrumentation({
        ignoreIncomingRequestHook: () => true,
        ignoreOutgoingRequestHook: (req) => collector !== undefined && `${req.hostname ?? req.host}:${req.port}` === collector,
      }),
    ],
  });
  sdk.start();
  return {
    serveMetrics: (log) => serveMetrics(prometheus, config.METRICS_HOST, config.METRICS_PORT, log),
    shutdown: () => withinLimit(sdk.shutdown(), SHUTDOWN_LIMIT_MS),
  };
}

/** A bad variable stops the process here, named, before anything else runs. */
function readConfig(defaultMetricsPort: number): TelemetryConfig {
  try {
    return telemetryConfig(defaultMetricsPort);
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}

const otlpEndpoint = (config: TelemetryConfig) =>
  (config.OTEL_EXPORTER_OTLP_ENDPOINT ?? `http://localhost:${config.OTEL_EXPORTER_OTLP_PROTOCOL === "grpc" ? 4317 : 4318}`).replace(/\/$/, "");

/** host:port of the collector, as an outgoing request names it. */
function collectorAddress(config: TelemetryConfig): string {
  const url = new URL(otlpEndpoint(config));
  return `${url.hostname}:${url.port || (url.protocol === "https:" ? 443 : 80)}`;
}

function traceExporter(config: TelemetryConfig): SpanExporter | undefined {
  if (config.OTEL_TRACES_EXPORTER === "none") return undefined;
  if (config.OTEL_TRACES_EXPORTER === "console") return new ConsoleSpanExporter();
  const protocol = config.OTEL_EXPORTER_OTLP_PROTOCOL;
  const endpoint = otlpEndpoint(config);
  // Loaded on demand: each pulls in its own transport, and the gRPC one must not load grpc-js before it is instrumented.
  /* eslint-disable @typescript-eslint/no-require-imports */
  if (protocol === "grpc") {
    const { OTLPTraceExporter } = require("@opentelemetry/exporter-trace-otlp-grpc") as typeof import("@opentelemetry/exporter-trace-otlp-grpc");
    return new OTLPTraceExporter({ url: endpoint });
  }
  const { OTLPTraceExporter } = (
    protocol === "http/json" ? require("@opentelemetry/exporter-trace-otlp-http") : require("@opentelemetry/exporter-trace-otlp-proto")
  ) as typeof import("@opentelemetry/exporter-trace-otlp-proto");
  return new OTLPTraceExporter({ url: `${endpoint}/v1/traces` });
}

function sampler(config: TelemetryConfig): Sampler {
  const ratio = () => new TraceIdRatioBasedSampler(config.OTEL_TRACES_SAMPLER_ARG);
  switch (config.OTEL_TRACES_SAMPLER) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return ratio();
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: ratio() });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

function withinLimit(work: Promise<void>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    work.catch(() => {}).finally(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
