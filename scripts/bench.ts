/**
 * npm run bench: Tally as it runs — one process per service and the
 * gateway, over a PostgreSQL and a NATS of their own, tracing on with its
 * default sampling and exported — driven through the gateway over gRPC for
 * BENCH_SECONDS per scenario from a fixed BENCH_SEED; and, in the same run,
 * a baseline: the ledger's own code and SQL straight at PostgreSQL, with no
 * service in between, so every figure is also a ratio to what the database
 * alone does. Prints a table, the CPU each process used, and writes
 * bench-results/bench.json and bench.md. It reports; it does not assert.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Metadata, status as Status } from "@grpc/grpc-js";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import postgres from "postgres";
import { AccountService } from "../gen/tally/account/v1/account_service_pb";
import { LedgerService } from "../gen/tally/account/v1/ledger_service_pb";
import { RiskService } from "../gen/tally/risk/v1/risk_service_pb";
import { TransactionService } from "../gen/tally/transactions/v1/transaction_service_pb";
import { TransferStatus } from "../gen/tally/transactions/v1/transfer_pb";
import { connectDatabase } from "../platform/db/connect";
import { migrateSchema } from "../platform/db/migrate";
import { createServiceClient, type ClientOf } from "../platform/grpc/client";
import { RemoteError } from "../platform/grpc/status";
import { newId } from "../platform/ids";
import { projectRoot } from "../platform/project-root";
import { schema as accountSchema } from "../services/account/src/db/schema";
import { Accounts } from "../services/account/src/domain/accounts";
import { DEFAULT_RULES } from "../services/risk/src/domain/default-rules";
import { Ledger } from "../services/account/src/domain/ledger";
import { MAX_BATCH } from "../services/account/src/domain/posting";
import { testLogger } from "../test/support/infra";
import { pendingWork, startCluster, type Cluster } from "../test/support/cluster";
import { seededRandom } from "../test/support/random";
import { envInt, fundFromSettlement, machine, machineLine, mapLimit, percentile, postgresVersion, printColumns, round2, writeResults } from "./bench-support";
import { cpuSecondsOf, cpuSecondsOfCommand } from "./process-cpu";

const SECONDS = envInt("BENCH_SECONDS", 10);
const SEED = envInt("BENCH_SEED", 42);
const ACCOUNTS = envInt("BENCH_ACCOUNTS", 10_000);
// BENCH_TRACING=off runs the system without exporting spans, to see what tracing costs.
const TRACING = process.env.BENCH_TRACING !== "off";
const CONCURRENCY = 32;
const BATCH = 1_000;
const BATCH_CONCURRENCY = 2;
const CURRENCY = "USD";
const FUNDING = 100_000_000n;
const MAX_AMOUNT = 500;
// The share of credits the hot account receives in the hot scenarios.
const HOT_SHARE = 0.9;
// The shipped velocity rule would send this traffic to review, a path of its own (an analyst decides).
const VELOCITY_RULE = DEFAULT_RULES.find((r) => r.name === "velocity")!.id;

interface Result {
  name: string;
  path: "gateway (gRPC)" | "PostgreSQL alone";
  seconds: number;
  /** Transfers posted, or balances read. */
  done: number;
  perSecond: number;
  requests: number;
  latencyMs: { p50: number; p95: number; p99: number };
  /** Requests or items that failed, by code or result. */
  errors: Record<string, number>;
  /** CPU seconds per process over the scenario, and as a share of one core. */
  cpu: Record<string, { seconds: number; corePct: number }>;
}

type Op = (random: () => number) => Promise<{ done: number; errors?: string[] }>;

/** Runs `op` from `concurrency` workers for SECONDS; what it did, how fast, and the CPU each process used. */
async function measure(name: string, via: Result["path"], concurrency: number, op: Op, processes: () => Record<string, number>): Promise<Result> {
  process.stdout.write(`running: ${name} via ${via} (${SECONDS} s)\n`);
  const random = seededRandom(SEED);
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let done = 0;
  const cpuBefore = processes();
  const started = performance.now();
  const until = started + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        try {
          const outcome = await op(random);
          done += outcome.done;
          for (const e of outcome.errors ?? []) errors[e] = (errors[e] ?? 0) + 1;
        } catch (err) {
          const key = err instanceof RemoteError ? `${Status[err.code]} ${err.reasonName}` : String(err);
          errors[key] = (errors[key] ?? 0) + 1;
        }
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const cpuAfter = processes();
  latencies.sort((a, b) => a - b);
  const cpu = Object.fromEntries(
    Object.keys(cpuAfter).map((p) => {
      const used = cpuAfter[p] - (cpuBefore[p] ?? 0);
      return [p, { seconds: round2(used), corePct: Math.round((100 * used) / seconds) }];
    }),
  );
  return {
    name,
    path: via,
    seconds: round2(seconds),
    done,
    perSecond: Math.round(done / seconds),
    requests: latencies.length,
    latencyMs: { p50: round2(percentile(latencies, 50)), p95: round2(percentile(latencies, 95)), p99: round2(percentile(latencies, 99)) },
    errors,
    cpu,
  };
}

/** A from/to pair: uniform, or with the hot account taking HOT_SHARE of the credits. */
function pair(accounts: string[], random: () => number, hot: boolean): [string, string] {
  const pick = () => accounts[1 + Math.floor(random() * (accounts.length - 1))];
  const to = hot && random() < HOT_SHARE ? accounts[0] : pick();
  let from = pick();
  while (from === to) from = pick();
  return [from, to];
}

/** This process's CPU seconds, user and system. */
function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

const amount = (random: () => number) => BigInt(1 + Math.floor(random() * MAX_AMOUNT));

/** An OTLP endpoint that takes the spans and drops them: tracing costs what exporting costs, with no collector to measure. */
async function spanSink(): Promise<{ endpoint: string; close(): void }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(200, { "content-type": "application/x-protobuf" }).end());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

interface GatewayClients {
  accounts: ClientOf<typeof AccountService>;
  transactions: ClientOf<typeof TransactionService>;
  risk: ClientOf<typeof RiskService>;
  metadata: Metadata;
}

async function gatewayClients(cluster: Cluster, role: "teller" | "analyst"): Promise<GatewayClients> {
  const target = `127.0.0.1:${cluster.of("gateway")[0].port}`;
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${await cluster.token(role)}`);
  const options = { defaultTimeoutMs: 60_000 };
  return {
    accounts: createServiceClient(AccountService, target, options),
    transactions: createServiceClient(TransactionService, target, options),
    risk: createServiceClient(RiskService, target, options),
    metadata,
  };
}

/**
 * Waits until the system has caught up — every outbox published, every
 * transfer at rest — so that one scenario's (or the setup's) backlog does not
 * run during the next.
 */
async function settle(cluster: Cluster, timeoutMs = 180_000): Promise<void> {
  const sql = postgres(cluster.databaseUrl, { max: 1, onnotice: () => {} });
  const nc = await connect({ servers: cluster.natsUrl });
  const jsm = await jetstreamManager(nc);
  const started = performance.now();
  try {
    for (;;) {
      const { unpublished, moving } = await pendingWork(sql);
      const backlog = moving + Object.values(unpublished).reduce((a, b) => a + b, 0);
      let unconsumed = 0;
      for await (const consumer of jsm.consumers.list("TALLY")) unconsumed += consumer.num_pending + consumer.num_ack_pending;
      if (backlog === 0 && unconsumed === 0) break;
      if (performance.now() - started > timeoutMs) throw new Error(`the system had not caught up after ${timeoutMs / 1000} s (${backlog} events or transfers pending, ${unconsumed} events not yet consumed)`);
      await new Promise((r) => setTimeout(r, 250));
    }
    process.stdout.write(`settled in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  } finally {
    await Promise.all([sql.end(), nc.close()]);
  }
}

/** The system's scenarios, through the gateway. */
async function systemScenarios(cluster: Cluster): Promise<Result[]> {
  const teller = await gatewayClients(cluster, "teller");
  const analyst = await gatewayClients(cluster, "analyst");
  await analyst.risk.disableRule({ ruleId: VELOCITY_RULE }, { metadata: analyst.metadata });
  const accountTarget = `127.0.0.1:${cluster.of("account")[0].port}`;
  const internal = {
    accounts: createServiceClient(AccountService, accountTarget, { defaultTimeoutMs: 60_000 }),
    ledger: createServiceClient(LedgerService, accountTarget, { defaultTimeoutMs: 60_000 }),
  };
  const started = performance.now();
  const accounts = await mapLimit(Array.from({ length: ACCOUNTS }, (_, i) => i), 16, async (i) => {
    const { account } = await internal.accounts.createAccount({ requestId: newId(), customerId: `bench-${i}`, currency: CURRENCY });
    return account!.id;
  });
  await fundFromSettlement(internal, accounts, FUNDING, CURRENCY);
  process.stdout.write(`setup: ${ACCOUNTS} accounts opened and funded in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);

  const processes = () => ({
    ...Object.fromEntries(cluster.replicas.map((r) => [r.name, cpuSecondsOf(r.pid)])),
    postgresql: cpuSecondsOfCommand("postgres"),
    "nats-server": cpuSecondsOfCommand("nats-server"),
    "bench client": ownCpuSeconds(),
  });
  const call = { metadata: teller.metadata };
  const transfer = (hot: boolean): Op => async (random) => {
    const [from, to] = pair(accounts, random, hot);
    const { transfer: t } = await teller.transactions.createTransfer({ requestId: newId(), fromAccountId: from, toAccountId: to, amount: { amount: amount(random), currency: CURRENCY } }, call);
    return t?.status === TransferStatus.POSTED ? { done: 1 } : { done: 0, errors: [`status ${TransferStatus[t?.status ?? 0]}`] };
  };
  const settled = () => settle(cluster);
  await settled();
  const results = [
    await measure("single transfers, uniform", "gateway (gRPC)", CONCURRENCY, transfer(false), processes),
    await settled().then(() => measure(`single transfers, ${HOT_SHARE * 100}% to one account`, "gateway (gRPC)", CONCURRENCY, transfer(true), processes)),
    await settled().then(() => measure(`batches of ${BATCH}, uniform`, "gateway (gRPC)", BATCH_CONCURRENCY, async (random) => {
      const transfers = Array.from({ length: BATCH }, () => {
        const [from, to] = pair(accounts, random, false);
        return { requestId: newId(), fromAccountId: from, toAccountId: to, amount: { amount: amount(random), currency: CURRENCY } };
      });
      const { results: items } = await teller.transactions.batchCreateTransfers({ transfers }, call);
      const posted = items.filter((i) => i.transfer?.status === TransferStatus.POSTED).length;
      return { done: posted, errors: items.filter((i) => i.transfer?.status !== TransferStatus.POSTED).map((i) => (i.transfer ? `status ${TransferStatus[i.transfer.status]}` : "refused")) };
    }, processes)),
    await settled().then(() => measure("balance reads", "gateway (gRPC)", CONCURRENCY, async (random) => {
      await teller.accounts.getBalance({ accountId: accounts[Math.floor(random() * accounts.length)] }, call);
      return { done: 1 };
    }, processes)),
  ];
  for (const c of [teller.accounts, teller.transactions, teller.risk, analyst.accounts, analyst.transactions, analyst.risk, internal.accounts, internal.ledger]) c.close();
  return results;
}

/** The baseline: the ledger's code posting the same transfers on a database of its own, in this process, with no service in between. */
async function baselineScenarios(cluster: Cluster): Promise<Result[]> {
  const url = cluster.databaseUrl.replace(/\/tally$/, "/tally_baseline");
  const admin = postgres(cluster.databaseUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe("create database tally_baseline");
  await admin.end();
  const log = testLogger();
  await migrateSchema({ url, schema: "account", migrationsFolder: path.join(projectRoot(), "services", "account", "migrations"), log });
  const database = connectDatabase({ url, poolSize: 10, log, applicationName: "bench-baseline" }, accountSchema);
  try {
    const outbox = { table: accountSchema.outbox, source: "account", subjectPrefix: "tally" };
    const store = new Accounts(database.db, outbox, () => {});
    await store.ensureSystemAccounts();
    const ledger = new Ledger(database.db, outbox);
    const settlement = (await store.systemAccount(CURRENCY, "settlement")).id;
    const accounts = await mapLimit(Array.from({ length: ACCOUNTS }, (_, i) => i), 16, async (i) => (await store.create({ requestId: newId(), customerId: `bench-${i}`, currency: CURRENCY, overdraftLimit: 0n, metadata: {}, accountId: "" })).id);
    for (let i = 0; i < accounts.length; i += MAX_BATCH) {
      await ledger.postTransfers(accounts.slice(i, i + MAX_BATCH).map((id) => posting(settlement, id, FUNDING)));
    }
    const processes = () => ({ postgresql: cpuSecondsOfCommand("postgres"), "bench client (the ledger)": ownCpuSeconds() });
    const single = (hot: boolean): Op => async (random) => {
      const [from, to] = pair(accounts, random, hot);
      const [outcome] = await ledger.postTransfers([posting(from, to, amount(random))]);
      return outcome.result === 1 ? { done: 1 } : { done: 0, errors: [`result ${outcome.result}`] };
    };
    return [
      await measure("single transfers, uniform", "PostgreSQL alone", CONCURRENCY, single(false), processes),
      await measure(`single transfers, ${HOT_SHARE * 100}% to one account`, "PostgreSQL alone", CONCURRENCY, single(true), processes),
      await measure(`batches of ${BATCH}, uniform`, "PostgreSQL alone", BATCH_CONCURRENCY, async (random) => {
        const outcomes = await ledger.postTransfers(Array.from({ length: BATCH }, () => {
          const [from, to] = pair(accounts, random, false);
          return posting(from, to, amount(random));
        }));
        return { done: outcomes.filter((o) => o.result === 1).length };
      }, processes),
      await measure("balance reads", "PostgreSQL alone", CONCURRENCY, async (random) => {
        await store.get(accounts[Math.floor(random() * accounts.length)]);
        return { done: 1 };
      }, processes),
    ];
  } finally {
    await database.close();
  }
}

const posting = (debitAccountId: string, creditAccountId: string, value: bigint) => ({
  id: newId(),
  debitAccountId,
  creditAccountId,
  amount: value,
  currency: CURRENCY,
  mode: "post" as const,
  pendingId: "",
  timeoutSeconds: 0n,
  linked: false,
  metadata: {},
});

/** The results as a table, each system figure with its ratio to the baseline's. */
function table(results: Result[]): string[][] {
  const baseline = new Map(results.filter((r) => r.path === "PostgreSQL alone").map((r) => [r.name, r]));
  return results.map((r) => {
    const base = baseline.get(r.name);
    const busiest = Object.entries(r.cpu).sort((a, b) => b[1].corePct - a[1].corePct).slice(0, 3);
    return [
      r.name,
      r.path,
      String(r.perSecond),
      r.path === "PostgreSQL alone" || !base ? "" : `${round2(r.perSecond / base.perSecond)}×`,
      String(r.latencyMs.p50),
      String(r.latencyMs.p95),
      String(r.latencyMs.p99),
      String(Object.values(r.errors).reduce((a, b) => a + b, 0)),
      // What one posting or read costs the machine, all processes together: the figure that bounds throughput on a small machine.
      r.done > 0 ? String(round2((1000 * Object.values(r.cpu).reduce((sum, c) => sum + c.seconds, 0)) / r.done)) : "",
      busiest.map(([p, c]) => `${p} ${c.corePct}%`).join(", "),
    ];
  });
}

const HEADER = ["scenario", "via", "per second", "of baseline", "p50 ms", "p95 ms", "p99 ms", "errors", "CPU ms each", "busiest processes (% of one core)"];

async function main(): Promise<void> {
  const sink = await spanSink();
  const cluster = await startCluster({ replicas: 1, env: { OTEL_TRACES_EXPORTER: TRACING ? "otlp" : "none", OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint, LOG_LEVEL: "warn" } });
  try {
    const sql = postgres(cluster.databaseUrl, { max: 1, onnotice: () => {} });
    const pg = await postgresVersion(sql);
    await sql.end();
    const results = [...(await baselineScenarios(cluster)), ...(await systemScenarios(cluster))];
    const host = machine();
    process.stdout.write(`\n${machineLine(host, pg)}\nsettings: ${SECONDS} s per scenario, seed ${SEED}, ${ACCOUNTS} accounts, concurrency ${CONCURRENCY} (batches: ${BATCH_CONCURRENCY}), ${TRACING ? "tracing on (parent-based, always sampled) and exported" : "tracing off (BENCH_TRACING=off)"}\n\n`);
    printColumns(HEADER, table(results));
    const file = writeResults(TRACING ? "bench" : "bench-untraced", { machine: host, postgres: pg, seconds: SECONDS, seed: SEED, accounts: ACCOUNTS, tracing: TRACING, results });
    const markdown = [`| ${HEADER.join(" | ")} |`, `|${HEADER.map(() => "---").join("|")}|`, ...table(results).map((row) => `| ${row.join(" | ")} |`)].join("\n");
    writeFileSync(file.replace(/\.json$/, ".md"), `${machineLine(host, pg)}\n\n${markdown}\n`);
    process.stdout.write(`\nresults: ${file} and ${file.replace(/\.json$/, ".md")}\n`);
  } finally {
    await cluster.stop();
    sink.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.stack : String(err));
    process.exit(1);
  },
);
