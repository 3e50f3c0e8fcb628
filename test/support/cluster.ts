import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import postgres from "postgres";
import type { RoleName } from "../../gateway/src/auth/principal";
import { developmentToken } from "../../gateway/src/auth/tokens";
import { gatewayConfig } from "../../gateway/src/config";
import { checkHealth } from "../../platform/grpc/health-check";
import { answersOk } from "../../platform/http-probe";
import { localNats, localPostgres, type LocalNats, type LocalPostgres } from "../../scripts/infra";
import { freePort } from "./infra";
import { spawnService, type LogLine, type ProcessName } from "./system";

/**
 * Tally as it runs in production, on one machine: several replicas of every
 * service and of the gateway, each a real process, over a PostgreSQL and a
 * NATS of its own that a test may crash and restart like any process.
 */
const MAINS: Record<ProcessName, string> = {
  account: "services/account/src/main.ts",
  transactions: "services/transactions/src/main.ts",
  risk: "services/risk/src/main.ts",
  gateway: "gateway/src/main.ts",
};
const SERVICES: ProcessName[] = ["account", "transactions", "risk", "gateway"];
const READY_MS = 90_000;
const EXIT_MS = 30_000;

/** One replica: a process that may be killed, paused, stopped and started again on the same ports. */
export class Replica {
  private child?: ReturnType<typeof spawnService>;
  private earlier: LogLine[] = [];

  constructor(
    readonly service: ProcessName,
    /** e.g. "account-2". */
    readonly name: string,
    readonly port: number,
    readonly metricsPort: number,
    private readonly env: Record<string, string>,
  ) {}

  get running(): boolean {
    return this.child !== undefined && this.child.child.exitCode === null && this.child.child.signalCode === null;
  }

  get pid(): number {
    return this.child!.child.pid!;
  }

  start(): void {
    if (this.child) this.earlier.push(...this.child.logs());
    this.child = spawnService(MAINS[this.service], this.env);
  }

  /** Waits for grpc.health.v1 SERVING (a service) or /readyz (a gateway). */
  async ready(timeoutMs = READY_MS): Promise<void> {
    const until = Date.now() + timeoutMs;
    const probe = () => (this.service === "gateway" ? answersOk(`http://127.0.0.1:${this.port}/readyz`, 1000) : checkHealth(`127.0.0.1:${this.port}`));
    while (!(await probe())) {
      if (!this.running) throw new Error(`${this.name} exited:\n${this.tail()}`);
      if (Date.now() > until) throw new Error(`${this.name} was not ready within ${timeoutMs / 1000}s:\n${this.tail()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  signal(signal: NodeJS.Signals): void {
    this.child?.child.kill(signal);
  }

  /** Sends a signal and waits for the exit; returns the exit code (null when a signal ended it). */
  async exit(signal: NodeJS.Signals, timeoutMs = EXIT_MS): Promise<number | null> {
    const child = this.child?.child;
    if (!child || !this.running) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  }

  async restart(): Promise<void> {
    this.start();
    await this.ready();
  }

  /** Everything every incarnation has written, parsed. */
  logs(): LogLine[] {
    return [...this.earlier, ...(this.child?.logs() ?? [])];
  }

  /** Its errors (why it stopped is seldom among the last lines), then its last lines. */
  private tail(): string {
    const lines = this.logs();
    const errors = lines.slice(0, -10).filter((l) => typeof l.level === "string" && ["error", "fatal"].includes(l.level));
    return JSON.stringify([...errors, ...lines.slice(-10)], null, 1);
  }
}

export interface Cluster {
  replicas: Replica[];
  of(service: ProcessName): Replica[];
  gatewayUrls: string[];
  databaseUrl: string;
  natsUrl: string;
  /** The cluster's own servers, to crash and restart. */
  postgres: LocalPostgres;
  nats: LocalNats;
  /** A development token for a role, as `npm start` prints them. */
  token(role: RoleName): Promise<string>;
  /**
   * Keeps the evidence of a failed run: writes every replica's log lines under the cluster's
   * folder and leaves that folder (PostgreSQL's and NATS's data and logs with them) when the
   * cluster stops. Returns the folder.
   */
  keep(): string;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  replicas: number;
  /** Variables for every process (after the cluster's own). */
  env?: Record<string, string>;
  /** Load pg_stat_statements, so a benchmark can count the statements a workload makes. */
  trackStatements?: boolean;
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "tally-cluster-"));
  // PostgreSQL runs as its own user when started by root, and must reach its data directory.
  chmodSync(dataDir, 0o755);
  const quiet = () => {};
  const [pgPort, natsPort] = [await freePort(), await freePort()];
  const pg = localPostgres(path.join(dataDir, "postgres"), "127.0.0.1", pgPort, quiet);
  const nats = localNats(path.join(dataDir, "nats"), "127.0.0.1", natsPort, quiet);
  const databaseUrl = `postgres://postgres@127.0.0.1:${pgPort}/tally`;
  const replicas: Replica[] = [];
  let kept = false;
  const keep = () => {
    const logDir = path.join(dataDir, "logs");
    mkdirSync(logDir, { recursive: true });
    for (const r of replicas) writeFileSync(path.join(logDir, `${r.name}.jsonl`), r.logs().map((line) => JSON.stringify(line)).join("\n") + "\n");
    kept = true;
    return dataDir;
  };
  const stop = async () => {
    await Promise.all(replicas.map((r) => r.exit("SIGTERM")));
    await nats.stop();
    pg.stop("immediate");
    if (kept) keep(); // again, with the lines written while stopping
    else rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await pg.start();
    const admin = postgres(`postgres://postgres@127.0.0.1:${pgPort}/postgres`, { max: 1, onnotice: () => {} });
    await admin.unsafe("create database tally");
    if (options.trackStatements) await admin.unsafe("alter system set shared_preload_libraries = 'pg_stat_statements'");
    await admin.end();
    if (options.trackStatements) {
      pg.stop("fast");
      await pg.start();
      const tally = postgres(databaseUrl, { max: 1, onnotice: () => {} });
      await tally.unsafe("create extension pg_stat_statements");
      await tally.end();
    }
    await nats.start();

    const ports: Record<ProcessName, { port: number; metricsPort: number }[]> = { account: [], transactions: [], risk: [], gateway: [] };
    for (const service of SERVICES) {
      for (let i = 0; i < options.replicas; i++) ports[service].push({ port: await freePort(), metricsPort: await freePort() });
    }
    const list = (service: ProcessName) => ports[service].map((p) => `127.0.0.1:${p.port}`).join(",");
    const common = {
      DATABASE_URL: databaseUrl,
      NATS_URL: `nats://127.0.0.1:${natsPort}`,
      ACCOUNT_SERVICE_URL: list("account"),
      TRANSACTIONS_SERVICE_URL: list("transactions"),
      RISK_SERVICE_URL: list("risk"),
      GRPC_HOST: "127.0.0.1",
      HTTP_HOST: "127.0.0.1",
      METRICS_HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      OTEL_TRACES_EXPORTER: "none",
      RATE_LIMIT_PER_SECOND: "100000",
      RATE_LIMIT_BURST: "100000",
      ...options.env,
    };
    for (const service of SERVICES) {
      ports[service].forEach(({ port, metricsPort }, i) => {
        const name = `${service}-${i + 1}`;
        const own = { [service === "gateway" ? "HTTP_PORT" : "GRPC_PORT"]: String(port), METRICS_PORT: String(metricsPort), SERVICE_INSTANCE_ID: name };
        replicas.push(new Replica(service, name, port, metricsPort, { ...common, ...own }));
      });
    }
    // All at once, as an orchestrator would start them: none depends on another being up first.
    replicas.forEach((r) => r.start());
    await Promise.all(replicas.map((r) => r.ready()));
    const of = (service: ProcessName) => replicas.filter((r) => r.service === service);
    return {
      replicas,
      of,
      gatewayUrls: of("gateway").map((g) => `http://127.0.0.1:${g.port}`),
      databaseUrl,
      natsUrl: common.NATS_URL,
      postgres: pg,
      nats,
      token: (role) => developmentToken(gatewayConfig({ ...process.env, ...common }), role),
      keep,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

const SERVICE_SCHEMAS = ["account", "transactions", "risk"] as const;

type BySchema = Record<(typeof SERVICE_SCHEMAS)[number], number>;

/**
 * What the system still has to do: each service's outbox rows not yet published, and transfers
 * not yet at rest; and the events its relays parked (the stream would not take them), which no
 * waiting will publish.
 */
export async function pendingWork(sql: postgres.Sql): Promise<{ unpublished: BySchema; parked: BySchema; moving: number }> {
  const counts = await Promise.all(
    SERVICE_SCHEMAS.map(async (s) => (await sql.unsafe(`select count(*) filter (where parked_at is null)::int as waiting, count(parked_at)::int as parked from ${s}.outbox where published_at is null`))[0]),
  );
  const [{ moving }] = await sql`select count(*)::int as moving from transactions.transfers where step <> 'done'`;
  const bySchema = (key: "waiting" | "parked") => Object.fromEntries(SERVICE_SCHEMAS.map((s, i) => [s, counts[i][key] as number])) as BySchema;
  return { unpublished: bySchema("waiting"), parked: bySchema("parked"), moving: moving as number };
}
