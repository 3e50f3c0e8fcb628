import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { AccountService } from "../../../gen/tally/account/v1/account_service_pb";
import { createServiceClient } from "../../../platform/grpc/client";
import { checkHealth } from "../../../platform/grpc/health-check";
import { eventually } from "../../../test/support/events";
import { createTestDatabase, serviceEnv, testStream, type TestDatabase, type TestStream } from "../../../test/support/infra";

/** The account service as a real process: telemetry first, JSON logs, health, and a clean exit on SIGTERM. */
let db: TestDatabase;
let stream: TestStream;
let collector: Server;
const exported: Buffer[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  stream = testStream();
  // A stand-in OTLP/HTTP collector that keeps what the service exports.
  collector = createServer((req, res) => {
    const body: Buffer[] = [];
    req.on("data", (c: Buffer) => body.push(c));
    req.on("end", () => {
      if (req.url === "/v1/traces") exported.push(Buffer.concat(body));
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
});

afterAll(async () => {
  collector.close();
  await Promise.all([db.drop(), stream.delete()]);
});

function startProcess(env: Record<string, string>): { child: ChildProcess; lines: () => Record<string, unknown>[] } {
  const root = path.resolve(__dirname, "../../..");
  const child = spawn(process.execPath, ["-r", "@swc-node/register", "services/account/src/main.ts"], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  const lines = () =>
    out
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return { unparsed: l };
        }
      });
  return { child, lines };
}

it("serves, traces its calls over OTLP, and stops cleanly on SIGTERM", async () => {
  const { port } = collector.address() as AddressInfo;
  const { child, lines } = startProcess({
    ...serviceEnv(db, stream),
    LOG_LEVEL: "info",
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    OTEL_BSP_SCHEDULE_DELAY: "100",
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

  // The server span of that call reaches the collector, named for the service that made it.
  await eventually(async () => exported.some((b) => b.includes("GetSystemAccount") && b.includes("service.name") && b.includes("account")), 15_000);

  child.kill("SIGTERM");
  expect(await exit).toBe(0);
  const logs = lines();
  expect(logs.every((l) => l.unparsed === undefined && l.service === "account")).toBe(true);
  expect(logs.map((l) => l.msg)).toEqual(expect.arrayContaining(["migrations applied", "shutting down", "stopped"]));
});

it("refuses to start with a bad variable, naming it", async () => {
  const { child, lines } = startProcess({ ...serviceEnv(db, stream), GRPC_PORT: "not-a-port" });
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  expect(code).not.toBe(0);
  expect(JSON.stringify(lines())).toContain("GRPC_PORT");
});
