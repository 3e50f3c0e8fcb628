/**
 * The transfer workload shared by bench:transfers and bench:gateway: accounts
 * to move money between, CreateTransfer or BatchCreateTransfers requests from
 * 32 concurrent workers for a fixed time with a fixed seed, and the tally of
 * what came back. Amounts are 0.01 to 5.00, below every amount threshold of
 * the shipped risk rules, so a transfer is held only when risk sends it to
 * review for another reason (the velocity rule) or did not answer within the
 * transactions service's deadline and the fallback policy held it.
 */
import { performance } from "node:perf_hooks";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type postgres from "postgres";
import { AccountService } from "../gen/tally/account/v1/account_service_pb";
import { LedgerService } from "../gen/tally/account/v1/ledger_service_pb";
import { RiskService } from "../gen/tally/risk/v1/risk_service_pb";
import { TransactionService, type BatchCreateTransferResult, type CreateTransferRequestSchema } from "../gen/tally/transactions/v1/transaction_service_pb";
import { RiskDecision, TransferStatus, type Transfer } from "../gen/tally/transactions/v1/transfer_pb";
import { reasonName } from "../platform/errors";
import { createServiceClient } from "../platform/grpc/client";
import { RemoteError } from "../platform/grpc/status";
import { newId } from "../platform/ids";
import type { Lifecycle } from "../platform/lifecycle";
import { accountConfig } from "../services/account/src/config";
import { startAccountService } from "../services/account/src/service";
import { riskConfig } from "../services/risk/src/config";
import { startRiskService } from "../services/risk/src/service";
import { transactionsConfig } from "../services/transactions/src/config";
import { startTransactionsService } from "../services/transactions/src/service";
import { serviceEnv, testLogger, type TestDatabase, type TestStream } from "../test/support/infra";
import { seededRandom } from "../test/support/random";
import {
  bump,
  elapsedMs,
  fundFromSettlement,
  openAccounts,
  outboxBacklog,
  percentile,
  printColumns,
  randomInt,
  round2,
  waitForOutbox,
  waitForProfile,
  type OutboxSchema,
} from "./bench-support";

export const CONCURRENCY = 32;
export const ACCOUNTS = 2_000;
export const CURRENCY = "USD";
// PostTransfers takes at most 1,000 items.
export const FUNDING_BATCH = 1_000;
// $1M each: far more than any scenario can move out of one account.
export const FUNDING_PER_ACCOUNT = 100_000_000n;
// Transfers are 1¢ to $5.
export const MAX_AMOUNT = 500;
// How long to wait, before a scenario, for the last one's transfers to come to rest.
const SETTLE_TIMEOUT_MS = 60_000;

export const SCHEMAS: OutboxSchema[] = ["account", "risk", "transactions"];

export interface Scenario {
  name: string;
  /** 1: CreateTransfer; more: BatchCreateTransfers with this many items. */
  batchSize: number;
  /** Every transfer credits the same account, so every posting waits for its row lock. */
  hotCredit: boolean;
}

interface StatusCounts {
  posted: number;
  held: number;
  declined: number;
  failed: number;
  other: number;
}

export interface ScenarioResult extends Scenario {
  seconds: number;
  requests: number;
  /** Transfers asked for, whatever came of them. */
  transfers: number;
  /** Transfers as the response returned them. */
  statuses: StatusCounts;
  /** Why transfers were held, declined or failed, or came back in another status. */
  heldReasons: Record<string, number>;
  declinedReasons: Record<string, number>;
  failedReasons: Record<string, number>;
  otherStatuses: Record<string, number>;
  /** Batch items answered with an error instead of a transfer, by reason. */
  itemErrors: number;
  itemErrorReasons: Record<string, number>;
  /** Requests that failed as a whole, by status and reason. */
  rpcErrors: number;
  rpcErrorReasons: Record<string, number>;
  /** Posted transfers per second. */
  transfersPerSecond: number;
  requestsPerSecond: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number };
  /** Transfers still between steps (waiting for risk or the ledger, or for recovery) when the scenario ended. */
  unsettled: number;
  /** Events each service's relay had not yet published to JetStream when the scenario ended. */
  outboxBacklog: Record<OutboxSchema, number>;
  /** Share of the time this process's event loop was busy: near 100 means client and services ran out of CPU here. */
  eventLoopBusyPct: number;
}

export type Clients = ReturnType<typeof connectClients>;
export type CreateTransferInit = MessageInitShape<typeof CreateTransferRequestSchema>;
export type Sql = postgres.Sql;

export function connectClients(accountTarget: string, riskTarget: string, transactionsTarget: string) {
  return {
    accounts: createServiceClient(AccountService, accountTarget, { defaultTimeoutMs: 10_000 }),
    ledger: createServiceClient(LedgerService, accountTarget, { defaultTimeoutMs: 30_000 }),
    risk: createServiceClient(RiskService, riskTarget, { defaultTimeoutMs: 10_000 }),
    transactions: createServiceClient(TransactionService, transactionsTarget, { defaultTimeoutMs: 60_000 }),
  };
}


/** Whatever carries a transfer request: a grpc-js client straight to the service, or one through the gateway, or HTTP JSON. */
export interface TransferApi {
  createTransfer(request: CreateTransferInit): Promise<{ transfer?: Transfer }>;
  batchCreateTransfers(request: { transfers: CreateTransferInit[] }): Promise<{ results: BatchCreateTransferResult[] }>;
}

// --- setup ---------------------------------------------------------------

/**
 * The account, risk and transactions services in this process on one fresh
 * database and a private stream, every setting their own default (as in
 * production) but for extraEnv; then the accounts, funded, and known to risk.
 */
export async function startStack(db: TestDatabase, stream: TestStream, lifecycle: Lifecycle, extraEnv: Record<string, string>) {
  const accountCfg = accountConfig(serviceEnv(db, stream, extraEnv));
  const account = await startAccountService(accountCfg, testLogger(), lifecycle);
  const accountTarget = `127.0.0.1:${account.port}`;
  const riskCfg = riskConfig(serviceEnv(db, stream, { ACCOUNT_SERVICE_URL: accountTarget, ...extraEnv }));
  const risk = await startRiskService(riskCfg, testLogger(), lifecycle);
  const riskTarget = `127.0.0.1:${risk.port}`;
  const transactionsCfg = transactionsConfig(serviceEnv(db, stream, { ACCOUNT_SERVICE_URL: accountTarget, RISK_SERVICE_URL: riskTarget, ...extraEnv }));
  const transactions = await startTransactionsService(transactionsCfg, testLogger(), lifecycle);
  const targets = { account: accountTarget, risk: riskTarget, transactions: `127.0.0.1:${transactions.port}` };
  const clients = connectClients(targets.account, targets.risk, targets.transactions);
  const ids = await openAccounts(clients, ACCOUNTS, CURRENCY, CONCURRENCY);
  await fundFromSettlement(clients, ids, FUNDING_PER_ACCOUNT, CURRENCY, FUNDING_BATCH);
  await waitForProfile(clients, ids[ids.length - 1]);
  return {
    targets,
    clients,
    ids,
    pools: { account: accountCfg.DATABASE_POOL_SIZE, risk: riskCfg.DATABASE_POOL_SIZE, transactions: transactionsCfg.DATABASE_POOL_SIZE },
    transactionsSettings: {
      riskDeadlineMs: transactionsCfg.RISK_DEADLINE_MS,
      riskFallback: transactionsCfg.RISK_FALLBACK,
      grpcDeadlineMs: transactionsCfg.GRPC_DEADLINE_MS,
      recoveryAfterMs: transactionsCfg.RECOVERY_AFTER_MS,
    },
  };
}

export type Stack = Awaited<ReturnType<typeof startStack>>;

/** Transfers left between steps (a fallback hold waiting for risk, a step the recovery loop will re-drive). */
export async function unsettledTransfers(sql: Sql): Promise<number> {
  try {
    const [row] = await sql`select count(*)::int as n from transactions.transfers where step <> 'done'`;
    return row.n as number;
  } catch {
    return -1;
  }
}

/** Lets the last scenario's transfers come to rest and every relay catch up, so its leftovers do not slow the next. */
export async function settle(sql: Sql): Promise<void> {
  const until = Date.now() + SETTLE_TIMEOUT_MS;
  while ((await unsettledTransfers(sql)) > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  for (const schema of SCHEMAS) await waitForOutbox(sql, schema);
}

// --- traffic -------------------------------------------------------------

/** One request's transfers: two distinct random accounts each, or a random sender into the hot account. */
function makeTransfers(rand: () => number, ids: string[], size: number, hotIndex: number | undefined): CreateTransferInit[] {
  return Array.from({ length: size }, () => {
    const amount = { amount: BigInt(1 + randomInt(rand, MAX_AMOUNT)), currency: CURRENCY };
    if (hotIndex !== undefined) {
      // Any account but the hot one: pick among n-1 and step over it.
      const d = randomInt(rand, ids.length - 1);
      return { requestId: newId(), fromAccountId: ids[d >= hotIndex ? d + 1 : d], toAccountId: ids[hotIndex], amount };
    }
    const d = randomInt(rand, ids.length);
    const c = (d + 1 + randomInt(rand, ids.length - 1)) % ids.length;
    return { requestId: newId(), fromAccountId: ids[d], toAccountId: ids[c], amount };
  });
}

/** What the workers count while a scenario runs. */
type Tally = Pick<
  ScenarioResult,
  "transfers" | "statuses" | "heldReasons" | "declinedReasons" | "failedReasons" | "otherStatuses" | "itemErrors" | "itemErrorReasons" | "rpcErrors" | "rpcErrorReasons"
> & { latencies: number[] };

/** Why risk said what it said: its fallback, or the rules that fired. */
function riskReason(t: Transfer): string {
  if (!t.risk) return "no risk outcome";
  if (t.risk.fallback) return "risk did not answer (fallback)";
  const decision = RiskDecision[t.risk.decision] ?? String(t.risk.decision);
  return t.risk.reasons.length > 0 ? `${decision.toLowerCase()}: ${t.risk.reasons.join(", ")}` : decision.toLowerCase();
}

function count(tally: Tally, t: Transfer | undefined): void {
  if (!t) {
    tally.statuses.other++;
    bump(tally.otherStatuses, "no transfer");
    return;
  }
  switch (t.status) {
    case TransferStatus.POSTED:
      tally.statuses.posted++;
      break;
    case TransferStatus.HELD:
      tally.statuses.held++;
      bump(tally.heldReasons, riskReason(t));
      break;
    case TransferStatus.DECLINED:
      tally.statuses.declined++;
      bump(tally.declinedReasons, riskReason(t));
      break;
    case TransferStatus.FAILED:
      tally.statuses.failed++;
      bump(tally.failedReasons, reasonName(t.failureReason));
      break;
    default:
      tally.statuses.other++;
      bump(tally.otherStatuses, TransferStatus[t.status] ?? String(t.status));
  }
}

/** One worker: requests back to back until the deadline, each counted and timed. */
async function worker(api: TransferApi, ids: string[], scenario: Scenario, hotIndex: number, rand: () => number, until: bigint, tally: Tally) {
  while (process.hrtime.bigint() < until) {
    const transfers = makeTransfers(rand, ids, scenario.batchSize, scenario.hotCredit ? hotIndex : undefined);
    const started = process.hrtime.bigint();
    try {
      if (scenario.batchSize === 1) {
        const { transfer } = await api.createTransfer(transfers[0]);
        tally.latencies.push(elapsedMs(started));
        tally.transfers++;
        count(tally, transfer);
      } else {
        const { results } = await api.batchCreateTransfers({ transfers });
        tally.latencies.push(elapsedMs(started));
        tally.transfers += transfers.length;
        for (const r of results) {
          if (r.transfer) count(tally, r.transfer);
          else {
            tally.itemErrors++;
            bump(tally.itemErrorReasons, reasonName(r.errorReason));
          }
        }
      }
    } catch (err) {
      // A failed call is timed too: it held a worker as long as a successful one would.
      tally.latencies.push(elapsedMs(started));
      tally.transfers += transfers.length;
      tally.rpcErrors++;
      bump(tally.rpcErrorReasons, err instanceof RemoteError ? `${err.code}/${err.reasonName}` : String((err as Error).message ?? err));
    }
  }
}

export async function runScenario(api: TransferApi, ids: string[], scenario: Scenario, index: number, seed: number, seconds: number, sql: Sql): Promise<ScenarioResult> {
  const hotIndex = randomInt(seededRandom(seed), ids.length);
  const tally: Tally = {
    latencies: [],
    transfers: 0,
    statuses: { posted: 0, held: 0, declined: 0, failed: 0, other: 0 },
    heldReasons: {},
    declinedReasons: {},
    failedReasons: {},
    otherStatuses: {},
    itemErrors: 0,
    itemErrorReasons: {},
    rpcErrors: 0,
    rpcErrorReasons: {},
  };
  const loopBefore = performance.eventLoopUtilization();
  const started = process.hrtime.bigint();
  const until = started + BigInt(seconds) * 1_000_000_000n;
  // Each worker has its own generator, so its sequence does not depend on how calls interleave.
  await Promise.all(
    Array.from({ length: CONCURRENCY }, (_, w) => worker(api, ids, scenario, hotIndex, seededRandom(seed + 1000 * (index + 1) + w), until, tally)),
  );
  // Wall time includes the calls still in flight at the deadline.
  const wallSeconds = elapsedMs(started) / 1000;
  const loop = performance.eventLoopUtilization(loopBefore);
  const unsettled = await unsettledTransfers(sql);
  const backlog = {} as Record<OutboxSchema, number>;
  for (const schema of SCHEMAS) backlog[schema] = await outboxBacklog(sql, schema);
  const sorted = tally.latencies.sort((a, b) => a - b);
  const byCount = (counts: Record<string, number>) => Object.fromEntries(Object.entries(counts).sort(([, a], [, b]) => b - a));
  return {
    ...scenario,
    seconds: round2(wallSeconds),
    requests: sorted.length,
    transfers: tally.transfers,
    statuses: tally.statuses,
    heldReasons: byCount(tally.heldReasons),
    declinedReasons: byCount(tally.declinedReasons),
    failedReasons: byCount(tally.failedReasons),
    otherStatuses: byCount(tally.otherStatuses),
    itemErrors: tally.itemErrors,
    itemErrorReasons: byCount(tally.itemErrorReasons),
    rpcErrors: tally.rpcErrors,
    rpcErrorReasons: byCount(tally.rpcErrorReasons),
    transfersPerSecond: round2(tally.statuses.posted / wallSeconds),
    requestsPerSecond: round2(sorted.length / wallSeconds),
    latencyMs: { p50: round2(percentile(sorted, 50)), p95: round2(percentile(sorted, 95)), p99: round2(percentile(sorted, 99)), max: round2(sorted.at(-1) ?? 0) },
    unsettled,
    outboxBacklog: backlog,
    eventLoopBusyPct: Math.round(loop.utilization * 100),
  };
}

// --- report --------------------------------------------------------------

export function printTable(results: ScenarioResult[]): void {
  const header = [
    "scenario",
    "wall s",
    "transfers/s",
    "requests/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "posted",
    "held",
    "declined",
    "failed",
    "other",
    "item errors",
    "rpc errors",
    "unsettled",
    "outbox a/r/t",
    "loop busy %",
  ];
  const rows = results.map((r) => [
    r.name,
    r.seconds.toFixed(1),
    r.transfersPerSecond.toFixed(0),
    r.requestsPerSecond.toFixed(0),
    r.latencyMs.p50.toFixed(1),
    r.latencyMs.p95.toFixed(1),
    r.latencyMs.p99.toFixed(1),
    String(r.statuses.posted),
    String(r.statuses.held),
    String(r.statuses.declined),
    String(r.statuses.failed),
    String(r.statuses.other),
    String(r.itemErrors),
    String(r.rpcErrors),
    String(r.unsettled),
    SCHEMAS.map((s) => r.outboxBacklog[s]).join("/"),
    String(r.eventLoopBusyPct),
  ]);
  printColumns(header, rows);
  const list = (counts: Record<string, number>) =>
    Object.entries(counts)
      .map(([k, n]) => `${k} ×${n}`)
      .join("; ");
  for (const r of results) {
    const parts: [string, Record<string, number>][] = [
      ["held", r.heldReasons],
      ["declined", r.declinedReasons],
      ["failed", r.failedReasons],
      ["other", r.otherStatuses],
      ["item errors", r.itemErrorReasons],
      ["rpc errors", r.rpcErrorReasons],
    ];
    for (const [label, counts] of parts) if (Object.keys(counts).length > 0) console.log(`  ${r.name}, ${label}: ${list(counts)}`);
  }
}
