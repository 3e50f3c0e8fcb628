import { z } from "zod";

/**
 * Typed, validated configuration. Services describe the variables they read
 * as a zod shape; loadConfig fails fast, naming every missing or bad variable.
 * Local defaults apply unless TALLY_ENV=production, where the addresses of
 * PostgreSQL and NATS must be given explicitly.
 */
export class ConfigError extends Error {
  override name = "ConfigError";
}

export type Env = Record<string, string | undefined>;

export function loadConfig<S extends z.ZodRawShape>(shape: S, env: Env = process.env): z.infer<z.ZodObject<S>> {
  // A variable set to "" (as compose files often do) counts as unset, whatever its type.
  const given = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v.trim() !== ""));
  const parsed = z.object(shape).safeParse(given);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const name = issue.path.join(".");
    return given[name] === undefined ? `${name} is required but not set` : `${name}: ${issue.message}`;
  });
  throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
}

export const isProduction = (env: Env = process.env): boolean => env.TALLY_ENV === "production";

/** A string that defaults to `local` outside production and is required in it. */
export function localDefault(local: string, env: Env = process.env) {
  const s = z.string().min(1);
  return isProduction(env) ? s : s.default(local);
}

export const int = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

export const bool = (fallback: boolean) =>
  z
    .enum(["true", "false", "1", "0", "yes", "no"])
    .default(fallback ? "true" : "false")
    .transform((v) => v === "true" || v === "1" || v === "yes");

export const logLevel = z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info");

/** Variables every service reads: its stores, its broker and its lifecycle. */
export function platformEnv(env: Env = process.env) {
  return {
    LOG_LEVEL: logLevel,
    DATABASE_URL: localDefault("postgres://postgres@127.0.0.1:5432/tally", env),
    DATABASE_POOL_SIZE: int(10, 1, 200),
    NATS_URL: localDefault("nats://127.0.0.1:4222", env),
    NATS_STREAM: z.string().regex(/^[A-Za-z0-9_-]+$/).default("TALLY"),
    NATS_SUBJECT_PREFIX: z.string().regex(/^[a-z0-9_]+(\.[a-z0-9_]+)*$/).default("tally"),
    // Longer than a relay takes to publish an event again after failing to mark it
    // sent, and well above the 10 s after which a frozen relay loses the lead.
    NATS_DUPLICATE_WINDOW_MS: int(10 * 60_000, 60_000),
    NATS_MAX_AGE_DAYS: int(7, 1),
    // 3 on a JetStream cluster; the stream is kept at what this says.
    NATS_STREAM_REPLICAS: int(1, 1, 5),
    GRPC_HOST: z.string().default("0.0.0.0"),
    GRPC_DEADLINE_MS: int(5000, 1),
    OUTBOX_POLL_MS: int(200, 10),
    OUTBOX_BATCH_SIZE: int(256, 1, 10_000),
    OUTBOX_RETENTION_HOURS: int(24, 1),
    SHUTDOWN_GRACE_MS: int(10_000, 0),
    // How long a starting service waits for PostgreSQL and NATS to answer before it gives up.
    DEPENDENCY_WAIT_MS: int(60_000, 0),
  };
}

export type PlatformConfig = ReturnType<typeof loadConfig<ReturnType<typeof platformEnv>>>;

/** What the telemetry bootstrap reads, before anything else is loaded; the OTEL_* names are OpenTelemetry's own. */
export function telemetryEnv(metricsPort: number) {
  return {
    // Off: no spans and no metrics. OTEL_TRACES_EXPORTER=none keeps the metrics and drops the spans.
    OTEL_SDK_DISABLED: bool(false),
    OTEL_TRACES_EXPORTER: z.enum(["otlp", "console", "none"]).default("otlp"),
    // Jaeger, like any OpenTelemetry collector, accepts OTLP on 4318 (HTTP, the default) and 4317 (gRPC).
    OTEL_EXPORTER_OTLP_ENDPOINT: z.string().url().optional(),
    OTEL_EXPORTER_OTLP_PROTOCOL: z.enum(["http/protobuf", "http/json", "grpc"]).default("http/protobuf"),
    OTEL_TRACES_SAMPLER: z
      .enum(["always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"])
      .default("parentbased_always_on"),
    OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).default(1),
    SERVICE_INSTANCE_ID: z.string().optional(),
    // Prometheus scrapes /metrics here; 0 picks a free port (logged).
    METRICS_HOST: z.string().default("0.0.0.0"),
    METRICS_PORT: int(metricsPort, 0, 65535),
  };
}

export const telemetryConfig = (metricsPort: number, env: Env = process.env) => loadConfig(telemetryEnv(metricsPort), env);

export type TelemetryConfig = ReturnType<typeof telemetryConfig>;
