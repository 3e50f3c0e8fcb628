/**
 * npm run bench: Tally as it runs — one process per service and the
 * gateway, over a PostgreSQL and a NATS of their own, tracing on with its
 * default sampling and exported — driven through the gateway over gRPC for
 * BENCH_SECONDS per scenario from a fixed BENCH_SEED, closed loop (32 in
 * flight; uniform transfers also with 512, which share more of their costs),
 * and once open loop at half the most it reached, for the latency there;
 * and, in the same run, a baseline: the ledger's own code and SQL straight
 * at PostgreSQL, with no service in between, so every figure is also a ratio
 * to what the database alone does; and the uniform scenario twice on a
 * system that exports no spans, in turns with the traced one once more
 * (off, on, off), for what tracing costs. Prints a table, the
 * CPU each process used and each target against its figure, and writes
 * bench-results/bench.json, bench.md and bench.svg. It reports; it does not assert.
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
import { VELOCITY_RULE_ID } from "../services/risk/src/domain/default-rules";
import { Ledger } from "../services/account/src/domain/ledger";
import { MAX_BATCH } from "../services/account/src/domain/posting";
import { testLogger } from "../test/support/infra";
import { pendingWork, startCluster, type Cluster } from "../test/support/cluster";
import { seededRandom } from "../test/support/random";
import { envInt, fundFromSettlement, machine, machineLine, mapLimit, percentile, postgresVersion, printColumns, round2, writeResults } from "./bench-support";
import { barChart } from "./bench-chart";
import { cpuSecondsOfCommand, systemCpuSeconds } from "./process-cpu";

const SECONDS = envInt("BENCH_SECONDS", 10);
const SEED = envInt("BENCH_SEED", 42);
// Unmeasured load before the measured scenarios, so that each process has compiled its hot paths and filled its caches.
const WARMUP_SECONDS = envInt("BENCH_WARMUP_SECONDS", 10);
const ACCOUNTS = envInt("BENCH_ACCOUNTS", 10_000);
const CONCURRENCY = 32;
// Enough transfers in flight that they share every statement, call and wakeup: the most the machine gives.
const MANY_IN_FLIGHT = 512;
const UNIFORM_MANY = `single transfers, uniform, ${MANY_IN_FLIGHT} in flight`;
const BATCH = 1_000;
// One batch at a time: a batch is a thousand transfers in flight already.
const BATCH_CONCURRENCY = 1;
const CURRENCY = "USD";
const FUNDING = 100_000_000n;
const MAX_AMOUNT = 500;
// The share of credits the hot account receives in the hot scenarios.
const HOT_SHARE = 0.9;
const UNIFORM = "single transfers, uniform";
const HOT = `single transfers, ${HOT_SHARE * 100}% to one account`;
// Scenarios measured a second time, in turns with another, so that a ratio of two means meets the
// same moments of the machine: uniform on each system (what tracing costs), and, for the ledger
// alone, uniform and hot (what a hot account costs it).
const UNIFORM_AGAIN = `${UNIFORM}, again`;
const HOT_AGAIN = `${HOT}, again`;

type Via = "gateway (gRPC)" | "gateway (gRPC), tracing off" | "PostgreSQL alone";

interface Result {
  name: string;
  path: Via;
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
  /** Open-loop scenarios: the rate requests were sent at. */
  offeredPerSecond?: number;
}

type Op = (random: () => number) => Promise<{ done: number; errors?: string[] }>;

/** Runs `op` from `concurrency` workers for SECONDS (closed loop: each sends again once answered). */
async function measure(name: string, via: Result["path"], concurrency: number, op: Op, processes: () => Record<string, number>, seconds = SECONDS): Promise<Result> {
  process.stdout.write(`running: ${name} via ${via} (${seconds} s)\n`);
  const random = seededRandom(SEED);
  const tally = new Tally();
  const cpuBefore = processes();
  const started = performance.now();
  const until = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        await tally.record(op(random), t0);
      }
    }),
  );
  return tally.result(name, via, started, cpuBefore, processes());
}

/**
 * Sends `op` at a fixed rate for SECONDS (open loop: on schedule whatever the
 * answers), each latency counted from when its request was due, so a slow
 * answer cannot hide the requests it would have held back.
 */
async function measureAtRate(name: string, via: Result["path"], perSecond: number, op: Op, processes: () => Record<string, number>): Promise<Result> {
  process.stdout.write(`running: ${name} via ${via} (${SECONDS} s at ${perSecond}/s)\n`);
  const random = seededRandom(SEED);
  const tally = new Tally();
  const cpuBefore = processes();
  const started = performance.now();
  const total = Math.floor(perSecond * SECONDS);
  const sent: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    sent.push(tally.record(op(random), due));
  }
  await Promise.all(sent);
  return { ...tally.result(name, via, started, cpuBefore, processes()), offeredPerSecond: perSecond };
}

/** What a scenario's requests did: how many were done, their latencies, their errors. */
class Tally {
  done = 0;
  readonly latencies: number[] = [];
  readonly errors: Record<string, number> = {};

  async record(outcome: ReturnType<Op>, since: number): Promise<void> {
    try {
      const { done, errors } = await outcome;
      this.done += done;
      for (const e of errors ?? []) this.errors[e] = (this.errors[e] ?? 0) + 1;
    } catch (err) {
      const key = err instanceof RemoteError ? `${Status[err.code]} ${err.reasonName}` : String(err);
      this.errors[key] = (this.errors[key] ?? 0) + 1;
    }
    this.latencies.push(performance.now() - since);
  }

  result(name: string, via: Result["path"], started: number, cpuBefore: Record<string, number>, cpuAfter: Record<string, number>): Result {
    const seconds = (performance.now() - started) / 1000;
    const latencies = [...this.latencies].sort((a, b) => a - b);
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
      done: this.done,
      perSecond: Math.round(this.done / seconds),
      requests: latencies.length,
      latencyMs: { p50: round2(percentile(latencies, 50)), p95: round2(percentile(latencies, 95)), p99: round2(percentile(latencies, 99)) },
      errors: this.errors,
      cpu,
    };
  }
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
  const options = { defaultTimeoutMs: 120_000 };
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
      const { unpublished, parked, moving } = await pendingWork(sql);
      const backlog = moving + Object.values(unpublished).reduce((a, b) => a + b, 0);
      const setAside = Object.values(parked).reduce((a, b) => a + b, 0);
      if (setAside > 0) throw new Error(`${setAside} events were parked: the stream would not take them (see the outbox's park_reason)`);
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

/** A system under test, its accounts opened and funded, warmed up: its scenarios, and the uniform one again. */
interface SystemUnderTest {
  /** Every scenario, in turn. */
  scenarios(): Promise<Result[]>;
  /** Single transfers, uniform, 32 in flight: again, for comparing two systems in turns. */
  uniform(name?: string): Promise<Result>;
  close(): void;
}

/** Opens and funds the accounts of a system through its gateway, warms it up, and returns its scenarios. */
async function systemUnderTest(cluster: Cluster, via: Via): Promise<SystemUnderTest> {
  const teller = await gatewayClients(cluster, "teller");
  const analyst = await gatewayClients(cluster, "analyst");
  await analyst.risk.disableRule({ ruleId: VELOCITY_RULE_ID }, { metadata: analyst.metadata });
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

  const processes = () => ({ ...systemCpuSeconds(cluster.replicas), "bench client": ownCpuSeconds() });
  const call = { metadata: teller.metadata };
  const transfer = (hot: boolean): Op => async (random) => {
    const [from, to] = pair(accounts, random, hot);
    const { transfer: t } = await teller.transactions.createTransfer({ requestId: newId(), fromAccountId: from, toAccountId: to, amount: { amount: amount(random), currency: CURRENCY } }, call);
    return t?.status === TransferStatus.POSTED ? { done: 1 } : { done: 0, errors: [`status ${TransferStatus[t?.status ?? 0]}`] };
  };
  const settled = () => settle(cluster);
  await settled();
  await measure("warm-up (not reported)", via, CONCURRENCY, transfer(false), processes, WARMUP_SECONDS);
  const measureUniform = async (name = UNIFORM) => {
    await settled();
    return measure(name, via, CONCURRENCY, transfer(false), processes);
  };
  const scenarios = async () => {
    const uniform = await measureUniform();
    const results = [uniform];
    await settled();
    const many = await measure(UNIFORM_MANY, via, MANY_IN_FLIGHT, transfer(false), processes);
    results.push(many);
    // Latency where the system keeps up: an open loop at half the most it reached.
    const half = Math.max(1, Math.round(Math.max(uniform.perSecond, many.perSecond) / 2));
    await settled();
    results.push(await measureAtRate(`single transfers at half that rate, uniform`, via, half, transfer(false), processes));
    await settled();
    results.push(await measure(HOT, via, CONCURRENCY, transfer(true), processes));
    await settled();
    results.push(
      await measure(`batches of ${BATCH}, uniform`, via, BATCH_CONCURRENCY, async (random) => {
        const transfers = Array.from({ length: BATCH }, () => {
          const [from, to] = pair(accounts, random, false);
          return { requestId: newId(), fromAccountId: from, toAccountId: to, amount: { amount: amount(random), currency: CURRENCY } };
        });
        const { results: items } = await teller.transactions.batchCreateTransfers({ transfers }, call);
        const posted = items.filter((i) => i.transfer?.status === TransferStatus.POSTED).length;
        return { done: posted, errors: items.filter((i) => i.transfer?.status !== TransferStatus.POSTED).map((i) => (i.transfer ? `status ${TransferStatus[i.transfer.status]}` : "refused")) };
      }, processes),
    );
    await settled();
    results.push(
      await measure("balance reads", via, CONCURRENCY, async (random) => {
        await teller.accounts.getBalance({ accountId: accounts[Math.floor(random() * accounts.length)] }, call);
        return { done: 1 };
      }, processes),
    );
    return results;
  };
  const clients = [teller.accounts, teller.transactions, teller.risk, analyst.accounts, analyst.transactions, analyst.risk, internal.accounts, internal.ledger];
  return { scenarios, uniform: measureUniform, close: () => clients.forEach((c) => c.close()) };
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
    await measure("warm-up (not reported)", "PostgreSQL alone", CONCURRENCY, single(false), processes, WARMUP_SECONDS);
    return [
      await measure(UNIFORM, "PostgreSQL alone", CONCURRENCY, single(false), processes),
      await measure(HOT, "PostgreSQL alone", CONCURRENCY, single(true), processes),
      await measure(UNIFORM_AGAIN, "PostgreSQL alone", CONCURRENCY, single(false), processes),
      await measure(HOT_AGAIN, "PostgreSQL alone", CONCURRENCY, single(true), processes),
      await measure(UNIFORM_MANY, "PostgreSQL alone", MANY_IN_FLIGHT, single(false), processes),
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

/** Each target of the issue this benchmark answers to, with the figure this run measured; a report, not an assertion. */
function targets(results: Result[]): string[][] {
  const find = (name: string, via: Via) => results.find((r) => r.name === name && r.path === via);
  const uniform = find(UNIFORM, "gateway (gRPC)");
  // The most single transfers the system reached, at either number in flight.
  const many = find(UNIFORM_MANY, "gateway (gRPC)");
  const [most, inFlight] = (many?.perSecond ?? -1) > (uniform?.perSecond ?? -1) ? [many, MANY_IN_FLIGHT] : [uniform, CONCURRENCY];
  const half = find("single transfers at half that rate, uniform", "gateway (gRPC)");
  // The mean throughput of a scenario's runs on one system (a run and its "again", taken in turns with another).
  const mean = (via: Via, ...names: string[]) => {
    const runs = results.filter((r) => r.path === via && names.includes(r.name));
    return runs.length === 0 ? NaN : runs.reduce((sum, r) => sum + r.perSecond, 0) / runs.length;
  };
  const meanUniform = (via: Via) => mean(via, UNIFORM, UNIFORM_AGAIN);
  const meanHot = (via: Via) => mean(via, HOT, HOT_AGAIN);
  const row = (what: string, target: string, value: number, met: boolean, unit = ""): string[] => [what, target, Number.isNaN(value) ? "not measured" : `${value}${unit}`, Number.isNaN(value) ? "" : met ? "met" : "not met"];
  const tracingCost = Math.round(100 * (1 - meanUniform("gateway (gRPC)") / meanUniform("gateway (gRPC), tracing off")));
  const hotSystem = round2(meanHot("gateway (gRPC)") / meanUniform("gateway (gRPC)"));
  const hotLedger = round2(meanHot("PostgreSQL alone") / meanUniform("PostgreSQL alone"));
  const batch = find(`batches of ${BATCH}, uniform`, "gateway (gRPC)")?.perSecond ?? NaN;
  const reads = find("balance reads", "gateway (gRPC)")?.perSecond ?? NaN;
  return [
    row(`single transfers through the gateway (${inFlight} in flight)`, "≥ 2,000/s", most?.perSecond ?? NaN, (most?.perSecond ?? 0) >= 2000, "/s"),
    row(`p99 at half that load (${half?.offeredPerSecond ?? "?"}/s offered)`, "≤ 25 ms", half?.latencyMs.p99 ?? NaN, (half?.latencyMs.p99 ?? Infinity) <= 25, " ms"),
    row("batch transfers through the gateway", "≥ 15,000/s", batch, batch >= 15000, "/s"),
    row("balance reads through the gateway", "≥ 5,000/s", reads, reads >= 5000, "/s"),
    row("hot account against uniform, the system", "≥ 0.9×", hotSystem, hotSystem >= 0.9, "×"),
    row("hot account against uniform, the ledger alone (two runs each, in turns)", "≥ 0.9×", hotLedger, hotLedger >= 0.9, "×"),
    row("throughput tracing costs (two uniform runs each, in turns)", "≤ 15%", tracingCost, tracingCost <= 15, "%"),
  ];
}

/** Throughput of every scenario, the system's beside the baseline's. */
function chart(results: Result[], machineText: string): string {
  // In the order the system ran them; the baseline's bars beside the system's.
  const names = [...new Set([...results.filter((r) => r.path !== "PostgreSQL alone"), ...results].map((r) => r.name))];
  return barChart("Transfers or reads per second, by scenario (npm run bench)", machineText, "per second", names.map((name) => ({ label: name, bars: results.filter((r) => r.name === name).map((r) => ({ series: r.path, value: r.perSecond })) })));
}

const TARGET_HEADER = ["target", "wanted", "measured", ""];
const markdownTable = (header: string[], rows: string[][]) => [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`, ...rows.map((row) => `| ${row.join(" | ")} |`)].join("\n");

async function main(): Promise<void> {
  const sink = await spanSink();
  const system = (tracing: boolean) =>
    startCluster({
      replicas: 1,
      // A batch of a thousand may take longer than the gateway's usual 30 s limit on a client's deadline.
      env: { OTEL_TRACES_EXPORTER: tracing ? "otlp" : "none", OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint, LOG_LEVEL: "warn", MAX_DEADLINE_MS: "120000" },
    });
  const results: Result[] = [];
  let pg = "";
  try {
    const traced = await system(true);
    try {
      const sql = postgres(traced.databaseUrl, { max: 1, onnotice: () => {} });
      pg = await postgresVersion(sql);
      await sql.end();
      results.push(...(await baselineScenarios(traced)));
      const spans = await systemUnderTest(traced, "gateway (gRPC)");
      results.push(...(await spans.scenarios()));
      // What tracing costs, in the same run: the uniform scenario on a system that exports no spans,
      // in turns with the traced one (off, on, off), so that both meet the same moments of the machine.
      const untraced = await system(false);
      try {
        const noSpans = await systemUnderTest(untraced, "gateway (gRPC), tracing off");
        results.push(await noSpans.uniform(), await spans.uniform(UNIFORM_AGAIN), await noSpans.uniform(UNIFORM_AGAIN));
        noSpans.close();
      } finally {
        await untraced.stop();
      }
      spans.close();
    } finally {
      await traced.stop();
    }
  } finally {
    sink.close();
  }
  const host = machine();
  const settings = `settings: ${SECONDS} s per scenario, seed ${SEED}, ${ACCOUNTS} accounts, concurrency ${CONCURRENCY} (batches: ${BATCH_CONCURRENCY}; the second uniform: ${MANY_IN_FLIGHT}), tracing on (parent-based, always sampled) and exported unless said otherwise`;
  process.stdout.write(`\n${machineLine(host, pg)}\n${settings}\n\n`);
  printColumns(HEADER, table(results));
  process.stdout.write("\n");
  printColumns(TARGET_HEADER, targets(results));
  const file = writeResults("bench", { machine: host, postgres: pg, seconds: SECONDS, seed: SEED, accounts: ACCOUNTS, results, targets: targets(results) });
  const markdown = `${machineLine(host, pg)}\n${settings}\n\n${markdownTable(HEADER, table(results))}\n\n${markdownTable(TARGET_HEADER, targets(results))}\n`;
  writeFileSync(file.replace(/\.json$/, ".md"), markdown);
  writeFileSync(file.replace(/\.json$/, ".svg"), chart(results, machineLine(host, pg).replace(/^machine: /, "")));
  process.stdout.write(`\nresults: ${file}, and as a table and a chart beside it (bench.md, bench.svg)\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.stack : String(err));
    process.exit(1);
  },
);
