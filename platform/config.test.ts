import { z } from "zod";
import { thrownBy } from "../test/support/thrown";
import { bool, ConfigError, int, loadConfig, platformEnv, telemetryConfig, type Env } from "./config";

const configErrorOf = (run: () => unknown) => thrownBy(ConfigError, run);

describe("loadConfig", () => {
  it("names a required variable that is not set", () => {
    const err = configErrorOf(() => loadConfig({ SERVICE_TOKEN: z.string(), GRPC_PORT: int(50051) }, {}));
    expect(err.name).toBe("ConfigError");
    expect(err.message).toContain("SERVICE_TOKEN is required but not set");
    expect(err.message).not.toContain("GRPC_PORT");
  });

  it("names a variable whose value is malformed", () => {
    const err = configErrorOf(() => loadConfig({ GRPC_PORT: int(50051) }, { GRPC_PORT: "abc" }));
    expect(err.message).toMatch(/GRPC_PORT: /);
    expect(err.message).not.toContain("required but not set");
  });

  it("names every problem at once", () => {
    const err = configErrorOf(() =>
      loadConfig({ SERVICE_TOKEN: z.string(), GRPC_PORT: int(50051), VERBOSE: bool(false) }, { GRPC_PORT: "abc", VERBOSE: "maybe" }),
    );
    expect(err.message).toContain("SERVICE_TOKEN is required but not set");
    expect(err.message).toContain("GRPC_PORT: ");
    expect(err.message).toContain("VERBOSE: ");
  });

  it("returns typed values, coercing numbers and applying defaults", () => {
    const config = loadConfig({ GRPC_PORT: int(50051), POOL: int(10), NAME: z.string() }, { GRPC_PORT: "6000", NAME: "x" });
    expect(config).toEqual({ GRPC_PORT: 6000, POOL: 10, NAME: "x" });
  });

  it("treats a blank variable as unset, whatever its type", () => {
    expect(configErrorOf(() => loadConfig({ NAME: z.string() }, { NAME: " " })).message).toContain("NAME is required but not set");
    expect(loadConfig({ FLAG: bool(true) }, { FLAG: "" }).FLAG).toBe(true);
  });

  it("treats a blank number as unset, not as zero", () => {
    expect(loadConfig({ GRPC_PORT: int(50051) }, { GRPC_PORT: "" }).GRPC_PORT).toBe(50051);
    expect(loadConfig({ GRPC_PORT: int(50051) }, { GRPC_PORT: "  " }).GRPC_PORT).toBe(50051);
  });

  it("refuses numbers outside the bounds of int()", () => {
    const shape = { POOL: int(10, 1, 200) };
    expect(configErrorOf(() => loadConfig(shape, { POOL: "0" })).message).toContain("POOL: ");
    expect(configErrorOf(() => loadConfig(shape, { POOL: "201" })).message).toContain("POOL: ");
    expect(configErrorOf(() => loadConfig(shape, { POOL: "1.5" })).message).toContain("POOL: ");
    expect(loadConfig(shape, { POOL: "200" }).POOL).toBe(200);
  });
});

describe("bool()", () => {
  const flag = (env: Env, fallback = false) => loadConfig({ FLAG: bool(fallback) }, env).FLAG;

  it.each([
    ["true", true],
    ["1", true],
    ["yes", true],
    ["false", false],
    ["0", false],
    ["no", false],
  ])("parses %p as %p", (value, expected) => {
    expect(flag({ FLAG: value })).toBe(expected);
    expect(flag({ FLAG: value }, !expected)).toBe(expected);
  });

  it("falls back to its default when unset", () => {
    expect(flag({}, true)).toBe(true);
    expect(flag({}, false)).toBe(false);
  });

  it("refuses other words", () => {
    expect(configErrorOf(() => flag({ FLAG: "on" })).message).toContain("FLAG: ");
  });
});

describe("platformEnv", () => {
  const load = (env: Env) => loadConfig(platformEnv(env), env);

  it("requires DATABASE_URL and NATS_URL in production, naming both", () => {
    const env = { TALLY_ENV: "production" };
    const err = configErrorOf(() => load(env));
    expect(err.message).toContain("DATABASE_URL is required but not set");
    expect(err.message).toContain("NATS_URL is required but not set");
  });

  it("accepts production when both addresses are given", () => {
    const env = { TALLY_ENV: "production", DATABASE_URL: "postgres://db.internal/tally", NATS_URL: "nats://nats.internal:4222" };
    const config = load(env);
    expect(config.DATABASE_URL).toBe("postgres://db.internal/tally");
    expect(config.NATS_URL).toBe("nats://nats.internal:4222");
  });

  it("refuses an empty DATABASE_URL in production", () => {
    const env = { TALLY_ENV: "production", DATABASE_URL: "", NATS_URL: "nats://nats.internal:4222" };
    expect(configErrorOf(() => load(env)).message).toContain("DATABASE_URL is required but not set");
  });

  it("applies local defaults outside production", () => {
    const config = load({});
    expect(config).toMatchObject({
      LOG_LEVEL: "info",
      DATABASE_URL: "postgres://postgres@127.0.0.1:5432/tally",
      DATABASE_POOL_SIZE: 10,
      NATS_URL: "nats://127.0.0.1:4222",
      NATS_STREAM: "TALLY",
      NATS_SUBJECT_PREFIX: "tally",
      NATS_DUPLICATE_WINDOW_MS: 600_000,
      GRPC_DEADLINE_MS: 5000,
      SHUTDOWN_GRACE_MS: 10_000,
    });
    expect(load({ TALLY_ENV: "staging" }).DATABASE_URL).toBe("postgres://postgres@127.0.0.1:5432/tally");
  });

  it("refuses a duplicate window shorter than a minute: a frozen relay's stale publishes must still be dropped", () => {
    expect(configErrorOf(() => load({ NATS_DUPLICATE_WINDOW_MS: "30000" })).message).toContain("NATS_DUPLICATE_WINDOW_MS");
    expect(load({ NATS_DUPLICATE_WINDOW_MS: "60000" }).NATS_DUPLICATE_WINDOW_MS).toBe(60_000);
  });

  it("refuses a subject prefix that is not dot-separated lower-case tokens", () => {
    expect(configErrorOf(() => load({ NATS_SUBJECT_PREFIX: "Tally.>" })).message).toContain("NATS_SUBJECT_PREFIX: ");
  });
});

describe("telemetryConfig", () => {
  it("defaults to OTLP over HTTP/protobuf, every trace sampled unless the caller's says otherwise, metrics on the service's port", () => {
    expect(telemetryConfig(9465, {})).toMatchObject({
      OTEL_SDK_DISABLED: false,
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
      OTEL_TRACES_SAMPLER: "parentbased_always_on",
      OTEL_TRACES_SAMPLER_ARG: 1,
      METRICS_PORT: 9465,
    });
    expect(telemetryConfig(9465, {}).OTEL_EXPORTER_OTLP_ENDPOINT).toBeUndefined();
  });

  it("takes OpenTelemetry's own variables", () => {
    const config = telemetryConfig(9465, {
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://jaeger:4317",
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
      OTEL_TRACES_SAMPLER_ARG: "0.25",
      METRICS_PORT: "0",
    });
    expect(config).toMatchObject({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc", OTEL_TRACES_SAMPLER_ARG: 0.25, METRICS_PORT: 0 });
  });

  it("names a protocol, sampler or ratio it cannot use, rather than quietly falling back", () => {
    const err = configErrorOf(() =>
      telemetryConfig(9465, { OTEL_EXPORTER_OTLP_PROTOCOL: "thrift", OTEL_TRACES_SAMPLER: "sometimes", OTEL_TRACES_SAMPLER_ARG: "2", OTEL_EXPORTER_OTLP_ENDPOINT: "jaeger" }),
    );
    for (const name of ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_EXPORTER_OTLP_ENDPOINT"]) expect(err.message).toContain(`${name}: `);
  });
});
