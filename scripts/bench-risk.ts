/**
 * Risk throughput: AssessTransfer over gRPC at concurrency 32, first with the
 * shipped rules, then with 20 enabled assessment rules. Every call assesses a
 * new transfer (each decision is stored, with a review opened when it says
 * review), so this measures the whole path. Prints assessments/s, latency, the
 * decision mix and the service's own decision time for each scenario, and
 * writes them to bench-results/risk.json. It reports; it does not assert.
 *
 *   npm run bench:risk
 *
 * Environment: BENCH_SECONDS (10) per scenario, BENCH_SEED (42) for the
 * generated traffic, DATABASE_POOL_SIZE for both services (their own default if unset).
 *
 * The account service and the risk service run in this process, as in the
 * risk tests: one fresh database and a private stream, free ports, real
 * grpc-js clients, and risk learning of accounts and transfers from the
 * account service's events. Clients and servers therefore share one event
 * loop; the numbers are for comparing runs on the same machine, not a
 * capacity figure.
 *
 * Three times per scenario:
 * - latency: the client's, per call (transport, validation, decision, storage);
 * - decide µs: the service's mean `duration_micros`, from reading the accounts'
 *   facts and the sender's profile to the decision, before it is stored;
 * - rules µs: the enabled rules alone, evaluated here on sample inputs through
 *   the service's own rule set, with no database or transport in the way.
 */
import { performance } from "node:perf_hooks";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import postgres from "postgres";
import { AccountService } from "../gen/tally/account/v1/account_service_pb";
import { PostingMode, PostingResult, type LedgerTransferSchema } from "../gen/tally/account/v1/ledger_pb";
import { LedgerService } from "../gen/tally/account/v1/ledger_service_pb";
import { AccountFactsSchema, RuleAction, RuleKind, type RuleSchema } from "../gen/tally/risk/v1/risk_pb";
import { RiskService } from "../gen/tally/risk/v1/risk_service_pb";
import { RiskDecision, TransferKind, TransferSchema } from "../gen/tally/transactions/v1/transfer_pb";
import { createServiceClient } from "../platform/grpc/client";
import { RemoteError } from "../platform/grpc/status";
import { newId } from "../platform/ids";
import { accountConfig } from "../services/account/src/config";
import { startAccountService } from "../services/account/src/service";
import { riskConfig } from "../services/risk/src/config";
import { transferFacts } from "../services/risk/src/domain/facts";
import type { AssessmentInput } from "../services/risk/src/rules/compile";
import { startRiskService, type RiskServiceHandle } from "../services/risk/src/service";
import { serviceEnv, testLogger } from "../test/support/infra";
import { seededRandom } from "../test/support/random";
import {
  bump,
  elapsedMs,
  machine,
  machineLine,
  mapLimit,
  outboxBacklog,
  percentile,
  postgresVersion,
  printColumns,
  randomInt,
  round2,
  waitForOutbox,
  writeResults,
  runBench,
  waitForProfile,
  type BenchRun,
} from "./bench-support";

const CONCURRENCY = 32;
const ACCOUNTS = 2_000;
const CURRENCY = "USD";
// Every other account is funded, so half the senders have recent credits in their profile.
const FUNDED_EVERY = 2;
// Small batches, so the funding spreads over a few of risk's 10-second activity buckets.
const FUNDING_BATCH = 250;
// Funding is 100.00 to 10,000.00 per account.
const FUNDING_MIN = 10_000;
const FUNDING_MAX = 1_000_000;
// The rules-only measure: this many sample inputs, evaluated this many times in all.
const RULE_SAMPLES = 500;
const RULE_EVALUATIONS = 20_000;

const COUNTRIES = ["US", "US", "US", "US", "GB", "DE", "FR", "CA", "MX", "BR", "NG", "IN"];
const CHANNELS = ["web", "web", "web", "web", "web", "mobile", "mobile", "mobile", "mobile", "api"];
const REFERENCES = ["rent", "invoice 2291", "dinner", "Crypto exchange top-up", "payroll", "gift", "school fees", "car repair"];

interface Scenario {
  name: string;
  /** Whether the 15 extra assessment rules are created (and stay enabled) before it runs. */
  extraRules: boolean;
}

const SCENARIOS: Scenario[] = [
  { name: "default rules", extraRules: false },
  { name: "20 enabled rules", extraRules: true },
];

/** An opened account, as the traffic generator needs it. */
interface BenchAccount {
  id: string;
  customerId: string;
  metadata: Record<string, string>;
}

interface ScenarioResult extends Scenario {
  /** Enabled rules of each kind while it ran. */
  assessmentRules: number;
  monitoringRules: number;
  seconds: number;
  requests: number;
  assessments: number;
  assessmentsPerSecond: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number };
  decisions: { approve: number; review: number; decline: number };
  /** Share of the assessments with each decision, in percent. */
  decisionMixPct: { approve: number; review: number; decline: number };
  /** How often each rule fired, by name. */
  ruleHits: Record<string, number>;
  /** Calls that failed as a whole, by status and reason. */
  rpcErrors: number;
  rpcErrorReasons: Record<string, number>;
  /** The service's `duration_micros`: reading facts and profile, evaluating the rules, deciding. */
  decideMicros: { mean: number; p50: number; p99: number };
  /** The enabled assessment rules alone, per assessment, evaluated in this process on sample inputs. */
  rulesOnlyMicros: number;
  /** Rules that could not be evaluated on an input during the scenario (they do not fire; the service counts them). */
  ruleEvaluationErrors: number;
  /** Events risk's relay had not yet published to JetStream when the scenario ended. */
  outboxBacklog: number;
  /** Share of the time this process's event loop was busy: near 100 means clients and services ran out of CPU here. */
  eventLoopBusyPct: number;
}

type Clients = ReturnType<typeof connectClients>;
type LedgerTransferInit = MessageInitShape<typeof LedgerTransferSchema>;
type TransferInit = MessageInitShape<typeof TransferSchema>;
type RuleInit = MessageInitShape<typeof RuleSchema>;
type Sql = postgres.Sql;

const pick = <T>(rand: () => number, items: readonly T[]): T => items[randomInt(rand, items.length)];

function connectClients(accountTarget: string, riskTarget: string) {
  return {
    accounts: createServiceClient(AccountService, accountTarget, { defaultTimeoutMs: 10_000 }),
    ledger: createServiceClient(LedgerService, accountTarget, { defaultTimeoutMs: 30_000 }),
    risk: createServiceClient(RiskService, riskTarget, { defaultTimeoutMs: 10_000 }),
  };
}

// --- setup ---------------------------------------------------------------

/** Customers, one in ten of them a merchant, each with a segment and a country. */
async function createAccounts(clients: Clients, rand: () => number): Promise<BenchAccount[]> {
  const started = process.hrtime.bigint();
  const plans = Array.from({ length: ACCOUNTS }, (_, i) => ({
    customerId: rand() < 0.1 ? `merchant-${i}` : `bench-${i}`,
    metadata: { segment: rand() < 0.2 ? "business" : "retail", country: pick(rand, COUNTRIES) },
  }));
  const accounts = await mapLimit(plans, CONCURRENCY, async (plan) => {
    const { account } = await clients.accounts.createAccount({ requestId: newId(), customerId: plan.customerId, currency: CURRENCY, metadata: plan.metadata });
    return { id: account!.id, customerId: plan.customerId, metadata: plan.metadata };
  });
  console.log(`setup: opened ${accounts.length} accounts in ${(elapsedMs(started) / 1000).toFixed(1)} s`);
  return accounts;
}

/** Money in from the settlement account for every FUNDED_EVERY-th account; returns the last one funded. */
async function fundAccounts(clients: Clients, accounts: BenchAccount[], rand: () => number): Promise<string> {
  const started = process.hrtime.bigint();
  const settlement = (await clients.accounts.getSystemAccount({ currency: CURRENCY })).account!.id;
  const funded = accounts.filter((_, i) => i % FUNDED_EVERY === 0).map((a) => a.id);
  for (let start = 0; start < funded.length; start += FUNDING_BATCH) {
    const transfers: LedgerTransferInit[] = funded.slice(start, start + FUNDING_BATCH).map((id) => ({
      id: newId(),
      debitAccountId: settlement,
      creditAccountId: id,
      amount: BigInt(FUNDING_MIN + randomInt(rand, FUNDING_MAX - FUNDING_MIN)),
      currency: CURRENCY,
      mode: PostingMode.POST,
    }));
    const { results } = await clients.ledger.postTransfers({ transfers });
    const failed = results.find((r) => r.result !== PostingResult.OK);
    if (failed) throw new Error(`funding failed: ${PostingResult[failed.result]} for transfer ${failed.transferId}`);
  }
  console.log(`setup: funded ${funded.length} accounts in ${(elapsedMs(started) / 1000).toFixed(1)} s`);
  return funded[funded.length - 1];
}

/** How many rules of each kind are enabled (the latest version of each rule). */
async function enabledRules(clients: Clients): Promise<{ assessment: number; monitoring: number }> {
  const counts = { assessment: 0, monitoring: 0 };
  let pageToken = "";
  do {
    const page = await clients.risk.listRules({ pageSize: 500, pageToken });
    for (const r of page.rules) {
      if (!r.enabled) continue;
      if (r.kind === RuleKind.ASSESSMENT) counts.assessment++;
      else if (r.kind === RuleKind.MONITORING) counts.monitoring++;
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
  return counts;
}

const list = (items: string[]) => `[${items.map((s) => JSON.stringify(s)).join(", ")}]`;

/**
 * Fifteen assessment rules of the kinds analysts write: metadata checks, amount
 * thresholds by currency, velocity over the profile's windows, counterparty
 * lists of 50 ids, string functions; most add to the score. The lists hold a
 * few of the opened accounts and customers, so they fire now and then.
 */
function extraRules(accounts: BenchAccount[], rand: () => number): RuleInit[] {
  const watchedPayees = [...Array.from({ length: 10 }, () => pick(rand, accounts).id), ...Array.from({ length: 40 }, () => newId())];
  const blockedCustomers = [
    ...Array.from({ length: 3 }, () => pick(rand, accounts).customerId),
    ...Array.from({ length: 47 }, (_, i) => `blocked-customer-${1000 + i}`),
  ];
  const assessment = (name: string, expression: string, action: RuleAction, score: number, priority: number): RuleInit => ({
    name,
    description: `bench: ${name}`,
    kind: RuleKind.ASSESSMENT,
    expression,
    action,
    score,
    priority,
    enabled: true,
  });
  const { ADD_SCORE, REVIEW, DECLINE } = RuleAction;
  return [
    // metadata
    assessment("new device", '"new_device" in transfer.metadata && transfer.metadata["new_device"] == "true" && transfer.amount >= 50000', ADD_SCORE, 30, 100),
    assessment(
      "ip country differs from the account's",
      '"ip_country" in transfer.metadata && "country" in from_account.metadata && transfer.metadata["ip_country"] != from_account.metadata["country"]',
      ADD_SCORE,
      30,
      110,
    ),
    assessment("sanctioned ip country", '"ip_country" in transfer.metadata && transfer.metadata["ip_country"] in ["CU", "IR", "KP", "SY"]', DECLINE, 100, 5),
    assessment("api channel, large amount", 'has(transfer.metadata.channel) && transfer.metadata.channel == "api" && transfer.amount >= 200000', ADD_SCORE, 15, 120),
    // amounts
    assessment(
      "large amount by currency",
      '(transfer.currency == "USD" && transfer.amount >= 500000) || (transfer.currency == "EUR" && transfer.amount >= 450000) || ' +
        '(transfer.currency == "GBP" && transfer.amount >= 400000) || (transfer.currency == "JPY" && transfer.amount >= 75000000)',
      ADD_SCORE,
      25,
      130,
    ),
    assessment("just under the reporting threshold", 'transfer.currency == "USD" && transfer.amount >= 900000 && transfer.amount < 1000000', ADD_SCORE, 35, 140),
    assessment("round amount", "transfer.amount >= 100000 && transfer.amount % 100000 == 0", ADD_SCORE, 10, 150),
    // velocity
    assessment("many payees in a day", "profile.distinct_counterparties_24h >= 20", ADD_SCORE, 30, 160),
    assessment("hourly outflow", 'from_account.kind == "customer" && profile.last_hour.debit_sum + transfer.amount > 2000000', REVIEW, 50, 50),
    assessment("drains a recent deposit", "profile.last_hour.credit_count > 0 && transfer.amount * 2 > profile.last_hour.credit_sum", ADD_SCORE, 30, 170),
    assessment("many debits", "profile.last_minute.debit_count >= 5 || profile.last_day.debit_count >= 50", ADD_SCORE, 20, 180),
    // counterparties
    assessment("watched payees", `transfer.to_account_id in ${list(watchedPayees)}`, REVIEW, 50, 1),
    assessment("blocked customers", `to_account.customer_id in ${list(blockedCustomers)} || from_account.customer_id in ${list(blockedCustomers)}`, DECLINE, 100, 2),
    // strings
    assessment("merchant payee, large amount", 'to_account.customer_id.startsWith("merchant-") && transfer.amount >= 200000', ADD_SCORE, 10, 190),
    assessment(
      "crypto reference",
      '"reference" in transfer.metadata && transfer.metadata["reference"].lowerAscii().contains("crypto")',
      ADD_SCORE,
      20,
      200,
    ),
  ];
}

async function createExtraRules(clients: Clients, accounts: BenchAccount[], rand: () => number): Promise<void> {
  for (const rule of extraRules(accounts, rand)) await clients.risk.createRule({ rule });
}

// --- traffic -------------------------------------------------------------

/** Mostly everyday amounts, with a tail of large ones and a few that the shipped rules decline. */
function amountOf(rand: () => number): bigint {
  const r = rand();
  if (r < 0.85) return BigInt(1 + randomInt(rand, 50_000)); // up to 500.00
  if (r < 0.97) return BigInt(50_000 + randomInt(rand, 950_000)); // to 10,000.00
  if (r < 0.995) return BigInt(1_000_000 + randomInt(rand, 4_000_000)); // to 50,000.00
  return BigInt(100_000_000 + randomInt(rand, 50_000_000)); // 1,000,000.00 and more
}

/** A transfer between two distinct random accounts, with the metadata a client would send. */
function makeTransfer(rand: () => number, accounts: BenchAccount[]): TransferInit {
  const d = randomInt(rand, accounts.length);
  const c = (d + 1 + randomInt(rand, accounts.length - 1)) % accounts.length;
  const from = accounts[d];
  const metadata: Record<string, string> = {
    channel: pick(rand, CHANNELS),
    ip_country: rand() < 0.85 ? from.metadata.country : pick(rand, COUNTRIES),
  };
  if (rand() < 0.05) metadata.new_device = "true";
  if (rand() < 0.2) metadata.reference = pick(rand, REFERENCES);
  return {
    id: newId(),
    kind: TransferKind.TRANSFER,
    fromAccountId: from.id,
    toAccountId: accounts[c].id,
    amount: { amount: amountOf(rand), currency: CURRENCY },
    metadata,
  };
}

interface Tally {
  latencies: number[];
  decideMicros: number[];
  decisions: { approve: number; review: number; decline: number };
  ruleHits: Record<string, number>;
  rpcErrors: number;
  rpcErrorReasons: Record<string, number>;
}

/** One worker: assessments back to back until the deadline, each counted and timed. */
async function worker(clients: Clients, accounts: BenchAccount[], rand: () => number, until: bigint, tally: Tally) {
  while (process.hrtime.bigint() < until) {
    const transfer = makeTransfer(rand, accounts);
    const started = process.hrtime.bigint();
    try {
      const { assessment } = await clients.risk.assessTransfer({ transfer });
      tally.latencies.push(elapsedMs(started));
      tally.decideMicros.push(Number(assessment!.durationMicros));
      for (const hit of assessment!.hits) bump(tally.ruleHits, hit.ruleName);
      if (assessment!.decision === RiskDecision.APPROVE) tally.decisions.approve++;
      else if (assessment!.decision === RiskDecision.REVIEW) tally.decisions.review++;
      else if (assessment!.decision === RiskDecision.DECLINE) tally.decisions.decline++;
      else bump(tally.rpcErrorReasons, `decision ${RiskDecision[assessment!.decision] ?? assessment!.decision}`);
    } catch (err) {
      // A failed call is timed too: it held a worker as long as a successful one would.
      tally.latencies.push(elapsedMs(started));
      tally.rpcErrors++;
      bump(tally.rpcErrorReasons, err instanceof RemoteError ? `${err.code}/${err.reasonName}` : String((err as Error).message ?? err));
    }
  }
}

/**
 * The rule set alone: sample transfers from the same generator, with the
 * accounts' facts as risk holds them and the senders' real profiles, evaluated
 * back to back through the service's rule set. Mean microseconds per assessment.
 */
async function rulesOnlyMicros(service: RiskServiceHandle, accounts: BenchAccount[], rand: () => number): Promise<number> {
  const byId = new Map(accounts.map((a) => [a.id, a]));
  const facts = (id: string) => {
    const a = byId.get(id)!;
    return create(AccountFactsSchema, { id, customerId: a.customerId, kind: "customer", status: "active", ageDays: 0n, metadata: a.metadata, known: true });
  };
  const samples: AssessmentInput[] = await mapLimit(
    Array.from({ length: RULE_SAMPLES }, () => create(TransferSchema, makeTransfer(rand, accounts))),
    CONCURRENCY,
    async (t) => ({ transfer: transferFacts(t), from_account: facts(t.fromAccountId), to_account: facts(t.toAccountId), profile: await service.profiles.profile(t.fromAccountId) }),
  );
  // Warm-up, then the measured run.
  for (const input of samples) await service.ruleSet.evaluate("assessment", input);
  const started = process.hrtime.bigint();
  for (let i = 0; i < RULE_EVALUATIONS; i++) await service.ruleSet.evaluate("assessment", samples[i % samples.length]);
  return (elapsedMs(started) * 1000) / RULE_EVALUATIONS;
}

async function runScenario(
  clients: Clients,
  service: RiskServiceHandle,
  accounts: BenchAccount[],
  scenario: Scenario,
  index: number,
  seed: number,
  seconds: number,
  sql: Sql,
): Promise<ScenarioResult> {
  const rules = await enabledRules(clients);
  const tally: Tally = { latencies: [], decideMicros: [], decisions: { approve: 0, review: 0, decline: 0 }, ruleHits: {}, rpcErrors: 0, rpcErrorReasons: {} };
  const errorsBefore = service.ruleSet.evaluationErrors;
  const loopBefore = performance.eventLoopUtilization();
  const started = process.hrtime.bigint();
  const until = started + BigInt(seconds) * 1_000_000_000n;
  // Each worker has its own generator, so its sequence does not depend on how calls interleave.
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => worker(clients, accounts, seededRandom(seed + 1000 * (index + 1) + w), until, tally)));
  // Wall time includes the calls still in flight at the deadline.
  const wallSeconds = elapsedMs(started) / 1000;
  const loop = performance.eventLoopUtilization(loopBefore);
  const ruleEvaluationErrors = service.ruleSet.evaluationErrors - errorsBefore;
  const backlog = await outboxBacklog(sql, "risk");

  const sorted = tally.latencies.sort((a, b) => a - b);
  const decide = tally.decideMicros.sort((a, b) => a - b);
  const assessments = decide.length;
  const share = (n: number) => (assessments === 0 ? 0 : Math.round((n / assessments) * 1000) / 10);
  const { approve, review, decline } = tally.decisions;
  return {
    ...scenario,
    assessmentRules: rules.assessment,
    monitoringRules: rules.monitoring,
    seconds: round2(wallSeconds),
    requests: sorted.length,
    assessments,
    assessmentsPerSecond: round2(assessments / wallSeconds),
    latencyMs: { p50: round2(percentile(sorted, 50)), p95: round2(percentile(sorted, 95)), p99: round2(percentile(sorted, 99)), max: round2(sorted.at(-1) ?? 0) },
    decisions: { ...tally.decisions },
    decisionMixPct: { approve: share(approve), review: share(review), decline: share(decline) },
    ruleHits: Object.fromEntries(Object.entries(tally.ruleHits).sort(([, a], [, b]) => b - a)),
    rpcErrors: tally.rpcErrors,
    rpcErrorReasons: tally.rpcErrorReasons,
    decideMicros: {
      mean: Math.round(assessments === 0 ? 0 : decide.reduce((sum, n) => sum + n, 0) / assessments),
      p50: percentile(decide, 50),
      p99: percentile(decide, 99),
    },
    rulesOnlyMicros: round2(await rulesOnlyMicros(service, accounts, seededRandom(seed + 1000 * (index + 1) + 999))),
    ruleEvaluationErrors,
    outboxBacklog: backlog,
    eventLoopBusyPct: Math.round(loop.utilization * 100),
  };
}

// --- report --------------------------------------------------------------

function printTable(results: ScenarioResult[]): void {
  const header = [
    "scenario",
    "rules",
    "assessments/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "approve",
    "review",
    "decline",
    "mix % a/r/d",
    "rpc errors",
    "decide µs",
    "rules µs",
    "outbox backlog",
    "loop busy %",
  ];
  const rows = results.map((r) => [
    r.name,
    `${r.assessmentRules}+${r.monitoringRules}`,
    r.assessmentsPerSecond.toFixed(0),
    r.latencyMs.p50.toFixed(1),
    r.latencyMs.p95.toFixed(1),
    r.latencyMs.p99.toFixed(1),
    String(r.decisions.approve),
    String(r.decisions.review),
    String(r.decisions.decline),
    `${r.decisionMixPct.approve.toFixed(1)}/${r.decisionMixPct.review.toFixed(1)}/${r.decisionMixPct.decline.toFixed(1)}`,
    String(r.rpcErrors),
    String(r.decideMicros.mean),
    r.rulesOnlyMicros.toFixed(1),
    String(r.outboxBacklog),
    String(r.eventLoopBusyPct),
  ]);
  printColumns(header, rows);
  for (const r of results) {
    const details = Object.entries(r.rpcErrorReasons);
    if (details.length > 0) console.log(`  ${r.name}: ${details.map(([k, n]) => `${k} ×${n}`).join(", ")}`);
    if (r.ruleEvaluationErrors > 0) console.log(`  ${r.name}: ${r.ruleEvaluationErrors} rule evaluation errors`);
  }
}

// --- main ----------------------------------------------------------------

async function main({ db, stream, lifecycle, seconds, seed, extraEnv, atEnd }: BenchRun): Promise<number> {
  const setupRand = seededRandom(seed);
  let clients: Clients | undefined;
  let sql: Sql | undefined;
  atEnd(async () => {
    for (const client of Object.values(clients ?? {})) client.close();
    await sql?.end();
  });
  // Setup: any failure here is the bench's own, and exits non-zero.
  let accounts: BenchAccount[];
  let service: RiskServiceHandle;
  let pools: { account: number; risk: number };
  let refreshMs: number;
  try {
    const accountCfg = accountConfig(serviceEnv(db, stream, extraEnv));
    const account = await startAccountService(accountCfg, testLogger(), lifecycle);
    const accountTarget = `127.0.0.1:${account.port}`;
    // RULES_REFRESH_MS is left at its default, as in production.
    const riskCfg = riskConfig(serviceEnv(db, stream, { ACCOUNT_SERVICE_URL: accountTarget, ...extraEnv }));
    pools = { account: accountCfg.DATABASE_POOL_SIZE, risk: riskCfg.DATABASE_POOL_SIZE };
    refreshMs = riskCfg.RULES_REFRESH_MS;
    service = await startRiskService(riskCfg, testLogger(), lifecycle);
    clients = connectClients(accountTarget, `127.0.0.1:${service.port}`);
    sql = postgres(db.url, { max: 1, onnotice: () => {} });
    const shipped = await enabledRules(clients);
    if (shipped.assessment !== 5 || shipped.monitoring !== 1) {
      throw new Error(`expected the 6 shipped rules (5 assessment, 1 monitoring), found ${shipped.assessment} + ${shipped.monitoring}`);
    }
    accounts = await createAccounts(clients, setupRand);
    const lastFunded = await fundAccounts(clients, accounts, setupRand);
    await waitForProfile(clients, lastFunded);
  } catch (err) {
    console.error(`setup failed: ${err instanceof Error ? err.stack : String(err)}`);
    return 1;
  }

  const results: ScenarioResult[] = [];
  for (const [index, scenario] of SCENARIOS.entries()) {
    if (scenario.extraRules) {
      try {
        await createExtraRules(clients, accounts, setupRand);
        const now = await enabledRules(clients);
        if (now.assessment !== 20) throw new Error(`expected 20 enabled assessment rules, found ${now.assessment}`);
      } catch (err) {
        console.error(`setup failed: ${err instanceof Error ? err.stack : String(err)}`);
        return 1;
      }
    }
    await waitForOutbox(sql, "account");
    await waitForOutbox(sql, "risk");
    console.log(`running: ${scenario.name} (${seconds} s)`);
    results.push(await runScenario(clients, service, accounts, scenario, index, seed, seconds, sql));
  }

  const host = machine();
  const settings = {
    seconds,
    seed,
    concurrency: CONCURRENCY,
    accounts: ACCOUNTS,
    fundedAccounts: Math.ceil(ACCOUNTS / FUNDED_EVERY),
    rulesRefreshMs: refreshMs,
    databasePoolSize: pools,
    postgres: await postgresVersion(sql),
  };
  console.log("");
  console.log(machineLine(host, settings.postgres));
  console.log(
    `settings: ${seconds} s per scenario, concurrency ${CONCURRENCY}, ${ACCOUNTS} accounts (${settings.fundedAccounts} funded), seed ${seed}, ` +
      `service pools account ${pools.account} / risk ${pools.risk}, rules refresh ${refreshMs} ms`,
  );
  console.log("");
  printTable(results);
  console.log("");
  console.log("rules: enabled assessment + monitoring rules. decide µs: the service's mean duration_micros (facts, profile, rules).");
  console.log("rules µs: the assessment rules alone, per assessment, evaluated in this process after the run.");
  const file = writeResults("risk", { finishedAt: new Date().toISOString(), machine: host, settings, scenarios: results });
  console.log(`results: ${file}`);
  return 0;
}

runBench(main);
