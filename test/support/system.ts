import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import type { RoleName } from "../../gateway/src/auth/principal";
import { developmentToken } from "../../gateway/src/auth/tokens";
import { gatewayConfig } from "../../gateway/src/config";
import { checkHealth } from "../../platform/grpc/health-check";
import { createTestDatabase, freePort, serviceEnv, testStream, type TestDatabase, type TestStream } from "./infra";

/**
 * The whole system as real processes, as `npm start` runs it but from the
 * TypeScript sources, on free ports, with its own database and stream: the
 * account, transactions and risk services and the gateway, each exporting
 * its spans, serving its metrics and writing JSON logs that the test can read.
 */
export type ProcessName = "account" | "transactions" | "risk" | "gateway";

export type LogLine = Record<string, unknown>;

export interface SystemProcess {
  name: ProcessName;
  child: ChildProcess;
  /** gRPC port of a service; HTTP port of the gateway. */
  port: number;
  metricsPort: number;
  /** Every line it has written so far, parsed (a line that is not JSON comes as { unparsed }). */
  logs(): LogLine[];
}

export interface System {
  gatewayUrl: string;
  processes: Record<ProcessName, SystemProcess>;
  database: TestDatabase;
  stream: TestStream;
  /** A development token for a role, as `npm start` prints them. */
  token(role: RoleName, customerId?: string): Promise<string>;
  /** Prometheus text from a process's /metrics. */
  metrics(name: ProcessName): Promise<string>;
  stop(): Promise<void>;
}

const ROOT = path.resolve(__dirname, "../..");
const MAINS: Record<ProcessName, string> = {
  account: "services/account/src/main.ts",
  transactions: "services/transactions/src/main.ts",
  risk: "services/risk/src/main.ts",
  gateway: "gateway/src/main.ts",
};
const STARTUP_MS = 90_000;

export async function startSystem(env: Record<string, string> = {}): Promise<System> {
  const [database, stream] = [await createTestDatabase(), testStream()];
  const names = Object.keys(MAINS) as ProcessName[];
  const ports = Object.fromEntries(await Promise.all(names.map(async (n) => [n, { port: await freePort(), metricsPort: await freePort() }] as const))) as Record<
    ProcessName,
    { port: number; metricsPort: number }
  >;
  const common = {
    ...serviceEnv(database, stream),
    LOG_LEVEL: "info",
    OTEL_SDK_DISABLED: "false",
    ACCOUNT_SERVICE_URL: `127.0.0.1:${ports.account.port}`,
    TRANSACTIONS_SERVICE_URL: `127.0.0.1:${ports.transactions.port}`,
    RISK_SERVICE_URL: `127.0.0.1:${ports.risk.port}`,
    HTTP_HOST: "127.0.0.1",
    METRICS_HOST: "127.0.0.1",
    ...env,
  };
  const processes = {} as Record<ProcessName, SystemProcess>;
  for (const name of names) {
    const { port, metricsPort } = ports[name];
    const own = { [name === "gateway" ? "HTTP_PORT" : "GRPC_PORT"]: String(port), METRICS_PORT: String(metricsPort), SERVICE_INSTANCE_ID: `${name}-1` };
    processes[name] = { name, port, metricsPort, ...spawnService(MAINS[name], { ...common, ...own }) };
  }
  const gatewayUrl = `http://127.0.0.1:${ports.gateway.port}`;
  const system: System = {
    gatewayUrl,
    processes,
    database,
    stream,
    token: (role, customerId) => developmentToken(gatewayConfig({ ...process.env, ...common }), role, { customerId }),
    metrics: async (name) => (await fetch(`http://127.0.0.1:${processes[name].metricsPort}/metrics`)).text(),
    stop: async () => {
      await Promise.all(Object.values(processes).map(stopProcess));
      await Promise.all([database.drop(), stream.delete()]);
    },
  };
  try {
    await waitReady(system);
  } catch (err) {
    await system.stop();
    throw err;
  }
  return system;
}

/** A TypeScript entry point run as a process (through swc), with everything it writes kept as parsed JSON lines. */
export function spawnService(main: string, env: Record<string, string>): Pick<SystemProcess, "child" | "logs"> {
  // TALLY_CPU_PROFILE_DIR: each process writes a V8 CPU profile there when it exits (for the benchmarks).
  const profile = process.env.TALLY_CPU_PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.TALLY_CPU_PROFILE_DIR}`] : [];
  const child = spawn(process.execPath, [...profile, "-r", "@swc-node/register", main], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  const logs = () =>
    out
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => {
        try {
          return JSON.parse(l) as LogLine;
        } catch {
          return { unparsed: l };
        }
      });
  return { child, logs };
}

async function waitReady(system: System): Promise<void> {
  const until = Date.now() + STARTUP_MS;
  for (const p of Object.values(system.processes)) {
    const ready = () =>
      p.name === "gateway"
        ? fetch(`${system.gatewayUrl}/readyz`).then((r) => r.ok, () => false)
        : checkHealth(`127.0.0.1:${p.port}`);
    while (!(await ready())) {
      if (p.child.exitCode !== null) throw new Error(`${p.name} exited (${p.child.exitCode}):\n${JSON.stringify(p.logs().slice(-10), null, 1)}`);
      if (Date.now() > until) throw new Error(`${p.name} was not ready within ${STARTUP_MS / 1000}s:\n${JSON.stringify(p.logs().slice(-10), null, 1)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function stopProcess(p: SystemProcess): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => p.child.once("exit", () => resolve()));
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}
