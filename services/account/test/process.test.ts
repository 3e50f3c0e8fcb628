import type { ChildProcess } from "node:child_process";
import { AccountService } from "../../../gen/tally/account/v1/account_service_pb";
import { createServiceClient } from "../../../platform/grpc/client";
import { checkHealth } from "../../../platform/grpc/health-check";
import { eventually } from "../../../test/support/events";
import { createTestDatabase, freePort, serviceEnv, testStream, type TestDatabase, type TestStream } from "../../../test/support/infra";
import { KIND, startOtlpReceiver, type OtlpReceiver } from "../../../test/support/otlp";
import { spawnService, type LogLine } from "../../../test/support/system";

/** The account service as a real process: telemetry first, JSON logs, health, and a clean exit on SIGTERM. */
let db: TestDatabase;
let stream: TestStream;
let collector: OtlpReceiver;

beforeAll(async () => {
  db = await createTestDatabase();
  stream = testStream();
  collector = await startOtlpReceiver();
});

afterAll(async () => {
  await collector.close();
  await Promise.all([db.drop(), stream.delete()]);
});

function startProcess(env: Record<string, string>): { child: ChildProcess; lines: () => LogLine[] } {
  const { child, logs } = spawnService("services/account/src/main.ts", env);
  return { child, lines: logs };
}

it("serves, traces its calls over OTLP, and stops cleanly on SIGTERM", async () => {
  const { child, lines } = startProcess({
    ...serviceEnv(db, stream),
    LOG_LEVEL: "info",
    OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint,
    OTEL_BSP_SCHEDULE_DELAY: "100",
    METRICS_PORT: "0",
    SERVICE_INSTANCE_ID: "account-under-test",
  });
  const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const listening = await eventually(async () => lines().find((l) => l.msg === "grpc server listening"), 30_000);
  const target = `127.0.0.1:${listening.port as number}`;
  expect(await checkHealth(target)).toBe(true);
  expect(await checkHealth(target, "tally.account.v1.LedgerService")).toBe(true);

  const client = createServiceClient(AccountService, target, { defaultTimeoutMs: 5000 });
  const { account } = await client.getSystemAccount({ currency: "USD" });
  expect(account?.currency).toBe("USD");
  client.close();

  // The server span of that call reaches the collector, named for the service and instance that made it.
  const span = await eventually(async () => collector.spans.find((s) => s.kind === KIND.SERVER && s.name.endsWith("AccountService/GetSystemAccount")), 15_000);
  expect(span).toMatchObject({ service: "account", instance: "account-under-test" });
  // Its metrics are served on the port it was given (here: any free one).
  const metricsPort = lines().find((l) => l.msg === "metrics listening")?.port as number;
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  expect(metrics).toMatch(/rpc_server_call_duration_count\{[^}]*rpc_method="tally.account.v1.AccountService\/GetSystemAccount"[^}]*\} 1/);

  child.kill("SIGTERM");
  expect(await exit).toBe(0);
  const logs = lines();
  expect(logs.every((l) => l.unparsed === undefined && l.service === "account")).toBe(true);
  expect(logs.map((l) => l.msg)).toEqual(expect.arrayContaining(["migrations applied", "shutting down", "stopped"]));
});

it("exports as JSON when OTEL_EXPORTER_OTLP_PROTOCOL says http/json", async () => {
  const { child, lines } = startProcess({
    ...serviceEnv(db, stream),
    LOG_LEVEL: "info",
    OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_BSP_SCHEDULE_DELAY: "50",
    SERVICE_INSTANCE_ID: "account-json",
    METRICS_PORT: "0",
  });
  const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const listening = await eventually(async () => lines().find((l) => l.msg === "grpc server listening"), 30_000);
  const client = createServiceClient(AccountService, `127.0.0.1:${listening.port as number}`, { defaultTimeoutMs: 5000 });
  await client.getSystemAccount({ currency: "EUR" });
  client.close();
  const span = await eventually(async () => collector.spans.find((s) => s.instance === "account-json" && s.kind === KIND.SERVER), 15_000);
  expect(span.name).toMatch(/AccountService\/GetSystemAccount$/);
  child.kill("SIGTERM");
  expect(await exit).toBe(0);

});

it.each([
  ["OTEL_TRACES_SAMPLER", "always_off"],
  ["OTEL_TRACES_EXPORTER", "none"],
])("with %s=%s, serves, exports no span, and still puts a trace id on its logs", async (variable, value) => {
  const instance = `account-${value}`;
  const quiet = startProcess({
    ...serviceEnv(db, stream),
    OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint,
    [variable]: value,
    OTEL_BSP_SCHEDULE_DELAY: "50",
    SERVICE_INSTANCE_ID: instance,
    LOG_LEVEL: "debug",
    METRICS_PORT: "0",
  });
  const exit = new Promise<number | null>((resolve) => quiet.child.on("exit", (code) => resolve(code)));
  const port = (await eventually(async () => quiet.lines().find((l) => l.msg === "grpc server listening"), 30_000)).port as number;
  const client = createServiceClient(AccountService, `127.0.0.1:${port}`, { defaultTimeoutMs: 5000 });
  await client.getSystemAccount({ currency: "EUR" });
  client.close();
  quiet.child.kill("SIGTERM");
  expect(await exit).toBe(0);
  expect(collector.spans.filter((s) => s.instance === instance)).toEqual([]);
  const answered = quiet.lines().find((l) => l.msg === "rpc answered");
  expect(answered?.trace_id).toMatch(/^[0-9a-f]{32}$/);
});

it("keeps serving when the trace collector cannot be reached, and still stops cleanly", async () => {
  const nobody = await freePort();
  const { child, lines } = startProcess({ ...serviceEnv(db, stream), LOG_LEVEL: "info", OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${nobody}`, OTEL_BSP_SCHEDULE_DELAY: "10", METRICS_PORT: "0" });
  const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const listening = await eventually(async () => lines().find((l) => l.msg === "grpc server listening"), 30_000);
  const client = createServiceClient(AccountService, `127.0.0.1:${listening.port as number}`, { defaultTimeoutMs: 5000 });
  for (let i = 0; i < 20; i++) expect((await client.getSystemAccount({ currency: "USD" })).account?.currency).toBe("USD");
  client.close();
  child.kill("SIGTERM");
  expect(await exit).toBe(0);
  expect(lines().filter((l) => l.level === "error" || l.level === "fatal")).toEqual([]);
});

it("refuses to start with a bad telemetry variable, naming it", async () => {
  const { child, lines } = startProcess({ ...serviceEnv(db, stream), OTEL_EXPORTER_OTLP_PROTOCOL: "thrift" });
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  expect(code).toBe(1);
  expect(JSON.stringify(lines())).toContain("OTEL_EXPORTER_OTLP_PROTOCOL");
});

it("refuses to start with a bad variable, naming it", async () => {
  const { child, lines } = startProcess({ ...serviceEnv(db, stream), GRPC_PORT: "not-a-port" });
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  expect(code).not.toBe(0);
  expect(JSON.stringify(lines())).toContain("GRPC_PORT");
});
