import { chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { developmentToken } from "../../gateway/src/auth/tokens";
import { gatewayConfig } from "../../gateway/src/config";
import { freePort } from "../support/infra";
import { freePortOffset, portsFree, START_PORTS, startedSystem, type NpmStart } from "../support/npm-start";

/**
 * `npm start` on a machine where PostgreSQL and NATS do not answer at the
 * configured addresses: it starts its own, with their data in one folder,
 * runs two replicas of every process, and stops it all on Ctrl-C.
 */
let system: NpmStart;
let dataDir: string;
let offset: number;
let pgPort: number;
let natsPort: number;

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), "tally-start-"));
  // PostgreSQL runs as its own user when started by root, and must reach its data directory.
  chmodSync(dataDir, 0o755);
  [offset, pgPort, natsPort] = [await freePortOffset(2, 0), await freePort(), await freePort()];
  system = await startedSystem({
    TALLY_DATA_DIR: dataDir,
    DATABASE_URL: `postgres://postgres@127.0.0.1:${pgPort}/tally_start`,
    NATS_URL: `nats://127.0.0.1:${natsPort}`,
    PORT_OFFSET: String(offset),
    REPLICAS: "2",
    OTEL_TRACES_EXPORTER: "none",
    LOG_LEVEL: "info",
  }, 170_000);
}, 360_000);

afterAll(async () => {
  await system?.interrupt();
  rmSync(dataDir, { recursive: true, force: true });
}, 40_000);

it("starts PostgreSQL and NATS of its own, with their data under one folder, and creates the database", () => {
  const output = system.output();
  expect(output).toContain(`[infra] initialising a local PostgreSQL cluster in ${path.join(dataDir, "postgres")}`);
  expect(output).toContain(`[infra] starting local PostgreSQL on 127.0.0.1:${pgPort}`);
  expect(output).toContain("[infra] created database tally_start");
  expect(output).toContain(`[infra] starting local nats-server with JetStream on 127.0.0.1:${natsPort}`);
  expect(existsSync(path.join(dataDir, "postgres", "PG_VERSION"))).toBe(true);
  expect(existsSync(path.join(dataDir, "nats", "jetstream"))).toBe(true);
});

it("runs two of every process, each applying migrations and logging under its own name", () => {
  const output = system.output();
  for (const service of ["account", "transactions", "risk"]) {
    for (const replica of [1, 2]) {
      expect(output).toMatch(new RegExp(`^${service}-${replica} +\\| \\{.*"msg":"migrations applied"`, "m"));
      expect(output).toMatch(new RegExp(`^  ${service}-${replica} +gRPC \\(internal\\) +127\\.0\\.0\\.1:${50051 + ["account", "transactions", "risk"].indexOf(service) + (replica - 1) * 100 + offset} `, "m"));
    }
  }
  expect(output).toMatch(/^gateway-2 +\| \{.*"msg":"gateway listening"/m);
});

it("serves calls through either gateway", async () => {
  const token = await developmentToken(gatewayConfig({}), "teller");
  for (const port of [8080 + offset, 8180 + offset]) {
    const response = await fetch(`http://127.0.0.1:${port}/v1/system-accounts/USD`, { headers: { Authorization: `Bearer ${token}` } });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ account: { kind: "ACCOUNT_KIND_SETTLEMENT", currency: "USD" } });
  }
});

it("stops everything on Ctrl-C, the PostgreSQL and NATS it started included", async () => {
  const stopped = system.waitFor("Tally stopped.", 40_000);
  await system.interrupt();
  await stopped;
  const ports = [...START_PORTS.flatMap((p) => [p + offset, p + 100 + offset]), pgPort, natsPort];
  expect(await portsFree(ports)).toBe(true);
}, 60_000);
