/**
 * Ledger throughput: PostTransfers over gRPC at concurrency 32, single items
 * and batches of 100, uniform over 10,000 accounts and with one hot credit
 * account. Prints transfers/s and request latency for each scenario and
 * writes them to bench-results/ledger.json. It reports; it does not assert.
 *
 *   npm run bench:ledger
 *
 * Environment: BENCH_SECONDS (10) per scenario, BENCH_SEED (42) for the
 * generated traffic, DATABASE_POOL_SIZE for the service (its own default if unset).
 *
 * The account service runs in this process, as in its tests: its own fresh
 * database and private stream, a free port, real grpc-js clients. Client and
 * server therefore share one event loop; the numbers are for comparing runs
 * on the same machine, not a capacity figure.
 */
import { performance } from "node:perf_hooks";
import type { MessageInitShape } from "@bufbuild/protobuf";
import postgres from "postgres";
import { AccountService } from "../gen/tally/account/v1/account_service_pb";
import { PostingMode, PostingResult, type LedgerTransferSchema } from "../gen/tally/account/v1/ledger_pb";
import { LedgerService, type ReconcileResponse } from "../gen/tally/account/v1/ledger_service_pb";
import { createServiceClient } from "../platform/grpc/client";
import { RemoteError } from "../platform/grpc/status";
import { newId } from "../platform/ids";
import { accountConfig } from "../services/account/src/config";
import { startAccountService } from "../services/account/src/service";
import { serviceEnv, testLogger } from "../test/support/infra";
import { seededRandom } from "../test/support/random";
import {
  bump,
  elapsedMs,
  machine,
  machineLine,
  outboxBacklog,
  percentile,
  postgresVersion,
  printColumns,
  randomInt,
  round2,
  waitForOutbox,
  writeResults,
  fundFromSettlement,
  openAccounts,
  runBench,
  type BenchRun,
} from "./bench-support";

const CONCURRENCY = 32;
const ACCOUNTS = 10_000;
const CURRENCY = "USD";
// PostTransfers takes at most 1,000 items.
const FUNDING_BATCH = 1_000;
// $1M each: far more than any scenario can move out of one account.
const FUNDING_PER_ACCOUNT = 100_000_000n;
// Transfers are 1¢ to $10.
const MAX_AMOUNT = 1_000;

const SCENARIOS: Scenario[] = [
  { name: "single, uniform", batchSize: 1, hotCredit: false },
  { name: "single, hot credit", batchSize: 1, hotCredit: true },
  { name: "batch 100, uniform", batchSize: 100, hotCredit: false },
  { name: "batch 100, hot credit", batchSize: 100, hotCredit: true },
];

interface Scenario {
  name: string;
  batchSize: number;
  /** Every transfer credits the same account, so every request waits for its row lock. */
  hotCredit: boolean;
}

interface ScenarioResult extends Scenario {
  seconds: number;
  requests: number;
  transfersOk: number;
  transfersFailed: number;
  /** Items answered with a result other than OK, by result name. */
  failedResults: Record<string, number>;
  /** Requests that failed as a whole, by status and reason. */
  rpcErrors: number;
  rpcErrorReasons: Record<string, number>;
  transfersPerSecond: number;
  requestsPerSecond: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number };
  /** Events the relay had not yet published to JetStream when the scenario ended. */
  outboxBacklog: number;
  /** Share of the time this process's event loop was busy: near 100 means client and service ran out of CPU here. */
  eventLoopBusyPct: number;
}

type Clients = ReturnType<typeof connectClients>;
type TransferInit = MessageInitShape<typeof LedgerTransferSchema>;
type Sql = postgres.Sql;

function connectClients(target: string) {
  return {
    accounts: createServiceClient(AccountService, target, { defaultTimeoutMs: 10_000 }),
    ledger: createServiceClient(LedgerService, target, { defaultTimeoutMs: 30_000 }),
  };
}

// --- setup ---------------------------------------------------------------



const transfer = (debitAccountId: string, creditAccountId: string, amount: bigint): TransferInit => ({
  id: newId(),
  debitAccountId,
  creditAccountId,
  amount,
  currency: CURRENCY,
  mode: PostingMode.POST,
});

// --- traffic -------------------------------------------------------------

/** One request's transfers: two distinct random accounts each, or a random debit into the hot account. */
function makeBatch(rand: () => number, ids: string[], size: number, hotIndex: number | undefined): TransferInit[] {
  return Array.from({ length: size }, () => {
    const amount = BigInt(1 + randomInt(rand, MAX_AMOUNT));
    if (hotIndex !== undefined) {
      // Any account but the hot one: pick among n-1 and step over it.
      const d = randomInt(rand, ids.length - 1);
      return transfer(ids[d >= hotIndex ? d + 1 : d], ids[hotIndex], amount);
    }
    const d = randomInt(rand, ids.length);
    const c = (d + 1 + randomInt(rand, ids.length - 1)) % ids.length;
    return transfer(ids[d], ids[c], amount);
  });
}

interface Tally {
  latencies: number[];
  transfersOk: number;
  transfersFailed: number;
  failedResults: Record<string, number>;
  rpcErrors: number;
  rpcErrorReasons: Record<string, number>;
}

/** One worker: requests back to back until the deadline, each counted and timed. */
async function worker(clients: Clients, ids: string[], scenario: Scenario, hotIndex: number, rand: () => number, until: bigint, tally: Tally) {
  while (process.hrtime.bigint() < until) {
    const transfers = makeBatch(rand, ids, scenario.batchSize, scenario.hotCredit ? hotIndex : undefined);
    const started = process.hrtime.bigint();
    try {
      const { results } = await clients.ledger.postTransfers({ transfers });
      tally.latencies.push(elapsedMs(started));
      for (const r of results) {
        if (r.result === PostingResult.OK) tally.transfersOk++;
        else {
          tally.transfersFailed++;
          bump(tally.failedResults, PostingResult[r.result] ?? String(r.result));
        }
      }
    } catch (err) {
      // A failed call is timed too: it held a worker as long as a successful one would.
      tally.latencies.push(elapsedMs(started));
      tally.rpcErrors++;
      bump(tally.rpcErrorReasons, err instanceof RemoteError ? `${err.code}/${err.reasonName}` : String((err as Error).message ?? err));
    }
  }
}

async function runScenario(clients: Clients, ids: string[], scenario: Scenario, index: number, seed: number, seconds: number, sql: Sql): Promise<ScenarioResult> {
  const hotIndex = randomInt(seededRandom(seed), ids.length);
  const tally: Tally = { latencies: [], transfersOk: 0, transfersFailed: 0, failedResults: {}, rpcErrors: 0, rpcErrorReasons: {} };
  const loopBefore = performance.eventLoopUtilization();
  const started = process.hrtime.bigint();
  const until = started + BigInt(seconds) * 1_000_000_000n;
  // Each worker has its own generator, so its sequence does not depend on how calls interleave.
  await Promise.all(
    Array.from({ length: CONCURRENCY }, (_, w) => worker(clients, ids, scenario, hotIndex, seededRandom(seed + 1000 * (index + 1) + w), until, tally)),
  );
  // Wall time includes the calls still in flight at the deadline.
  const wallSeconds = elapsedMs(started) / 1000;
  const loop = performance.eventLoopUtilization(loopBefore);
  const sorted = tally.latencies.sort((a, b) => a - b);
  return {
    ...scenario,
    seconds: round2(wallSeconds),
    requests: sorted.length,
    transfersOk: tally.transfersOk,
    transfersFailed: tally.transfersFailed,
    failedResults: tally.failedResults,
    rpcErrors: tally.rpcErrors,
    rpcErrorReasons: tally.rpcErrorReasons,
    transfersPerSecond: round2(tally.transfersOk / wallSeconds),
    requestsPerSecond: round2(sorted.length / wallSeconds),
    latencyMs: { p50: round2(percentile(sorted, 50)), p95: round2(percentile(sorted, 95)), p99: round2(percentile(sorted, 99)), max: round2(sorted.at(-1) ?? 0) },
    outboxBacklog: await outboxBacklog(sql),
    eventLoopBusyPct: Math.round(loop.utilization * 100),
  };
}

// --- report --------------------------------------------------------------

function printTable(results: ScenarioResult[]): void {
  const header = ["scenario", "transfers/s", "requests/s", "p50 ms", "p95 ms", "p99 ms", "ok", "failed", "rpc errors", "outbox backlog", "loop busy %"];
  const rows = results.map((r) => [
    r.name,
    r.transfersPerSecond.toFixed(0),
    r.requestsPerSecond.toFixed(0),
    r.latencyMs.p50.toFixed(1),
    r.latencyMs.p95.toFixed(1),
    r.latencyMs.p99.toFixed(1),
    String(r.transfersOk),
    String(r.transfersFailed),
    String(r.rpcErrors),
    String(r.outboxBacklog),
    String(r.eventLoopBusyPct),
  ]);
  printColumns(header, rows);
  for (const r of results) {
    const details = [...Object.entries(r.failedResults), ...Object.entries(r.rpcErrorReasons)];
    if (details.length > 0) console.log(`  ${r.name}: ${details.map(([k, n]) => `${k} ×${n}`).join(", ")}`);
  }
}

function reconcileSummary(r: ReconcileResponse) {
  return {
    balanced: r.balanced,
    breaches: r.breaches.length,
    accountsChecked: Number(r.accountsChecked),
    entriesChecked: Number(r.entriesChecked),
    transfersChecked: Number(r.transfersChecked),
  };
}

// --- main ----------------------------------------------------------------

async function main({ db, stream, lifecycle, seconds, seed, extraEnv, atEnd }: BenchRun): Promise<number> {
  let clients: Clients | undefined;
  let sql: Sql | undefined;
  atEnd(async () => {
    for (const client of Object.values(clients ?? {})) client.close();
    await sql?.end();
  });
  // Setup: any failure here is the bench's own, and exits non-zero.
  let ids: string[];
  let poolSize: number;
  try {
    const config = accountConfig(serviceEnv(db, stream, extraEnv));
    poolSize = config.DATABASE_POOL_SIZE;
    const service = await startAccountService(config, testLogger(), lifecycle);
    clients = connectClients(`127.0.0.1:${service.port}`);
    sql = postgres(db.url, { max: 1, onnotice: () => {} });
    ids = await openAccounts(clients, ACCOUNTS, CURRENCY, CONCURRENCY);
    await fundFromSettlement(clients, ids, FUNDING_PER_ACCOUNT, CURRENCY, FUNDING_BATCH);
  } catch (err) {
    console.error(`setup failed: ${err instanceof Error ? err.stack : String(err)}`);
    return 1;
  }

  const results: ScenarioResult[] = [];
  for (const [index, scenario] of SCENARIOS.entries()) {
    await waitForOutbox(sql);
    console.log(`running: ${scenario.name} (${seconds} s)`);
    results.push(await runScenario(clients, ids, scenario, index, seed, seconds, sql));
  }

  let reconciliation: ReturnType<typeof reconcileSummary> | { error: string };
  try {
    reconciliation = reconcileSummary(await clients.ledger.reconcile({}, { timeoutMs: 120_000 }));
  } catch (err) {
    reconciliation = { error: err instanceof Error ? err.message : String(err) };
  }

  const host = machine();
  const settings = { seconds, seed, concurrency: CONCURRENCY, accounts: ACCOUNTS, databasePoolSize: poolSize, postgres: await postgresVersion(sql) };
  console.log("");
  console.log(machineLine(host, settings.postgres));
  console.log(`settings: ${seconds} s per scenario, concurrency ${CONCURRENCY}, ${ACCOUNTS} accounts, seed ${seed}, service pool ${poolSize}`);
  console.log("");
  printTable(results);
  console.log("");
  console.log(
    "error" in reconciliation
      ? `reconcile: failed (${reconciliation.error})`
      : `reconcile: ${reconciliation.balanced ? "balanced" : `NOT balanced (${reconciliation.breaches} breaches)`}; ` +
          `${reconciliation.accountsChecked} accounts, ${reconciliation.transfersChecked} transfers, ${reconciliation.entriesChecked} entries`,
  );
  const file = writeResults("ledger", { finishedAt: new Date().toISOString(), machine: host, settings, scenarios: results, reconciliation });
  console.log(`results: ${file}`);
  return 0;
}

runBench(main);
