import { Code, ConnectError } from "@connectrpc/connect";
import postgres from "postgres";
import { LedgerService } from "../../gen/tally/account/v1/ledger_service_pb";
import { TransferStatus } from "../../gen/tally/transactions/v1/transfer_pb";
import { VELOCITY_RULE_ID } from "../../services/risk/src/domain/default-rules";
import { tallyClients, type TallyClients } from "../../cli/gateway-clients";
import { createServiceClient } from "../../platform/grpc/client";
import { newId } from "../../platform/ids";
import { pendingWork, type Cluster } from "../support/cluster";
import { seededRandom } from "../support/random";

/**
 * A bank in the spirit of Jepsen's bank test: accounts holding a fixed total,
 * clients moving money between them and reading balances through the
 * gateways while faults are injected, and afterwards an audit of everything
 * stored against what every client was told.
 */
export const CURRENCY = "USD";
const ACCOUNTS = 12;
// $1,000.00 each; transfers of up to $300.00 now and then find an account short of funds.
const OPENING_BALANCE = 100_000n;
const MAX_AMOUNT = 30_000;
const CALL_TIMEOUT_MS = 8_000;
// A request that could not be answered is sent again, with the same request id, for this long.
const RETRY_FOR_MS = 120_000;

/** Codes that leave a request's fate unknown: it may or may not have been applied, so it is sent again. */
const INDETERMINATE = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Aborted, Code.ResourceExhausted, Code.Unknown, Code.Internal, Code.Canceled]);

/** The system error code when the client's connection failed (refused, reset, hung up), so that no server answered. */
function connectionLost(error: ConnectError): string | undefined {
  for (let e: unknown = error.cause, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return code;
  }
  // Some paths of the HTTP/1.1 client keep only the message of the socket's error.
  return /\b(ECONNREFUSED|ECONNRESET|EPIPE|socket hang up)\b/.exec(error.rawMessage)?.[1];
}

export interface Bank {
  customerId: string;
  accounts: string[];
  total: bigint;
}

/** One transfer a client asked for, and what it was told. */
export interface Attempt {
  requestId: string;
  from: string;
  to: string;
  amount: bigint;
  /** How many times it was sent: more than one means the client retried it. */
  sends: number;
  /** acked: answered with a transfer; refused: a definite error; unknown: never answered. */
  outcome: "pending" | "acked" | "refused" | "unknown";
  /** When it was first sent, and how long until its answer (retries included). */
  sentAt: number;
  ms?: number;
  status?: TransferStatus;
  /** Risk could not answer and the fallback policy decided. */
  fallback?: boolean;
  error?: string;
}

export interface WorkloadStats {
  attempts: Attempt[];
  /** Errors clients met (each followed by a retry), by code. */
  errors: Record<string, number>;
  /** The first few messages of each code. */
  errorSamples: Record<string, string[]>;
  reads: number;
  readErrors: number;
  /** Reads of every account at once whose posted balances did not add up to the bank's total. */
  inconsistentReads: string[];
  /** Balances read below the accounts' limit (zero). */
  negativeReads: string[];
}

const clientsFor = (urls: string[], token: string) => urls.map((url) => tallyClients(url, token));

/** Opens the accounts (for one customer, so one read sees them all) and funds them from settlement. */
export async function openBank(gatewayUrls: string[], tellerToken: string, analystToken: string): Promise<Bank> {
  const [clients] = clientsFor(gatewayUrls, tellerToken);
  const customerId = `bank-${newId()}`;
  const accounts: string[] = [];
  for (let i = 0; i < ACCOUNTS; i++) {
    const { account } = await clients.account.createAccount({ requestId: newId(), customerId, currency: CURRENCY });
    await clients.transactions.createDeposit({ requestId: newId(), accountId: account!.id, amount: { amount: OPENING_BALANCE, currency: CURRENCY } });
    accounts.push(account!.id);
  }
  const [analyst] = clientsFor(gatewayUrls, analystToken);
  await analyst.risk.disableRule({ ruleId: VELOCITY_RULE_ID });
  // Every risk replica picks the change up within its refresh interval.
  await new Promise((r) => setTimeout(r, 2_000));
  return { customerId, accounts, total: OPENING_BALANCE * BigInt(ACCOUNTS) };
}

/**
 * Transfer workers and readers against every gateway until stopped. A worker
 * that gets no answer sends the same request again (same request id) through
 * the next gateway, with backoff, for up to RETRY_FOR_MS.
 */
export class BankWorkload {
  readonly stats: WorkloadStats = { attempts: [], errors: {}, errorSamples: {}, reads: 0, readErrors: 0, inconsistentReads: [], negativeReads: [] };
  private stopping = false;
  private readonly running: Promise<void>[] = [];
  private readonly clients: TallyClients[];
  private readonly random: () => number;

  constructor(
    private readonly bank: Bank,
    gatewayUrls: string[],
    token: string,
    seed: number,
    private readonly options = { transferWorkers: 6, readers: 2 },
  ) {
    this.clients = clientsFor(gatewayUrls, token);
    this.random = seededRandom(seed);
  }

  start(): void {
    for (let w = 0; w < this.options.transferWorkers; w++) this.running.push(this.transferLoop(w));
    for (let r = 0; r < this.options.readers; r++) this.running.push(this.readLoop(r));
  }

  /** Stops starting new requests and waits for those under way to be answered or given up on. */
  async stop(): Promise<WorkloadStats> {
    this.stopping = true;
    await Promise.all(this.running);
    return this.stats;
  }

  /** Requests answered so far. */
  get acked(): number {
    return this.stats.attempts.filter((a) => a.outcome === "acked").length;
  }

  private async transferLoop(worker: number): Promise<void> {
    const { accounts } = this.bank;
    while (!this.stopping) {
      const from = accounts[Math.floor(this.random() * accounts.length)];
      let to = from;
      while (to === from) to = accounts[Math.floor(this.random() * accounts.length)];
      const attempt: Attempt = { requestId: newId(), from, to, amount: BigInt(1 + Math.floor(this.random() * MAX_AMOUNT)), sends: 0, outcome: "pending", sentAt: Date.now() };
      this.stats.attempts.push(attempt);
      await this.send(attempt, worker);
    }
  }

  private async send(attempt: Attempt, worker: number): Promise<void> {
    const since = Date.now();
    for (let i = 0; ; i++) {
      const clients = this.clients[(worker + i) % this.clients.length];
      attempt.sends++;
      try {
        const { transfer } = await clients.transactions.createTransfer(
          { requestId: attempt.requestId, fromAccountId: attempt.from, toAccountId: attempt.to, amount: { amount: attempt.amount, currency: CURRENCY } },
          { timeoutMs: CALL_TIMEOUT_MS },
        );
        Object.assign(attempt, { outcome: "acked", status: transfer!.status, fallback: transfer!.risk?.fallback ?? false, ms: Date.now() - attempt.sentAt });
        return;
      } catch (err) {
        const error = ConnectError.from(err);
        const lost = connectionLost(error);
        // A connection that failed under the client (a gateway killed) is no answer at all, whatever code the client library gives it.
        const name = lost ? `no answer (${lost})` : Code[error.code];
        this.stats.errors[name] = (this.stats.errors[name] ?? 0) + 1;
        const samples = (this.stats.errorSamples[name] ??= []);
        if (samples.length < 3 && !samples.includes(error.rawMessage)) samples.push(error.rawMessage);
        attempt.error = `${name}: ${error.rawMessage}`;
        if (!lost && !INDETERMINATE.has(error.code)) {
          attempt.outcome = "refused";
          return;
        }
        if (Date.now() - since > RETRY_FOR_MS) {
          attempt.outcome = "unknown";
          return;
        }
        await new Promise((r) => setTimeout(r, Math.min(2_000, 100 * 2 ** i)));
      }
    }
  }

  /** Reads every account at once (one query, so one snapshot): the posted balances must add up to the total. */
  private async readLoop(reader: number): Promise<void> {
    for (let i = 0; !this.stopping; i++) {
      const clients = this.clients[(reader + i) % this.clients.length];
      try {
        const { accounts } = await clients.account.listAccounts({ customerId: this.bank.customerId, pageSize: 100 }, { timeoutMs: CALL_TIMEOUT_MS });
        this.stats.reads++;
        const posted = accounts.reduce((sum, a) => sum + (a.balance?.posted ?? 0n), 0n);
        if (accounts.length !== this.bank.accounts.length || posted !== this.bank.total) this.stats.inconsistentReads.push(`${accounts.length} accounts, posted total ${posted}`);
        for (const a of accounts) if ((a.balance?.available ?? 0n) < 0n) this.stats.negativeReads.push(`${a.id}: available ${a.balance?.available}`);
      } catch {
        this.stats.readErrors++;
        await new Promise((r) => setTimeout(r, 200));
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** One audited property: its name, whether it held, and what was looked at. */
export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/**
 * Waits until nothing is left between steps: every transfer at rest, every
 * outbox published, risk caught up with the ledger. Returns what still moves when the time is up.
 */
export async function waitForQuiet(sql: postgres.Sql, timeoutMs = 120_000): Promise<Check> {
  const started = Date.now();
  for (;;) {
    const { unpublished, parked, moving } = await pendingWork(sql);
    const lagging = await profileMismatches(sql);
    const backlog = Object.entries(unpublished).filter(([, n]) => n > 0);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    // An event parked is one no consumer will see: no fault here should make a relay judge a good event at fault.
    const setAside = Object.entries(parked).filter(([, n]) => n > 0);
    if (setAside.length > 0) {
      return { name: "everything comes to rest: transfers final, outboxes published, events applied", ok: false, detail: setAside.map(([schema, n]) => `${schema} outbox: ${n} parked`).join(", ") };
    }
    if (moving === 0 && backlog.length === 0 && lagging.length === 0) {
      return { name: "everything comes to rest: transfers final, outboxes published, events applied", ok: true, detail: `within ${seconds}s of the workload's end` };
    }
    if (Date.now() - started > timeoutMs) {
      const stuck = await sql`select id, kind, status, step, lease_until, updated_at, risk from transactions.transfers where step <> 'done' order by updated_at limit 5`;
      const problems = [...stuck.map((t) => `transfer ${JSON.stringify(t)}`), ...backlog.map(([schema, n]) => `${schema} outbox: ${n} unpublished`), ...lagging];
      return { name: "everything comes to rest: transfers final, outboxes published, events applied", ok: false, detail: `${problems.length} problems after ${seconds}s:${sample(problems)}` };
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Accounts whose risk profile (learnt from events) differs from what the ledger posted: an event lost or applied twice. */
async function profileMismatches(sql: postgres.Sql): Promise<string[]> {
  const rows = await sql`
    with moves as (
      select debit_account_id as account_id, 1 as debit_count, amount as debit_sum, 0 as credit_count, 0 as credit_sum from account.ledger_transfers where state = 'posted'
      union all
      select credit_account_id, 0, 0, 1, amount from account.ledger_transfers where state = 'posted'),
    ledger as (
      select account_id, sum(debit_count)::bigint as dc, sum(debit_sum)::bigint as ds, sum(credit_count)::bigint as cc, sum(credit_sum)::bigint as cs from moves group by account_id)
    select coalesce(l.account_id, p.account_id) as account_id, l.dc, l.ds, l.cc, l.cs, p.debit_count, p.debit_sum, p.credit_count, p.credit_sum
    from ledger l full join risk.profiles p on p.account_id = l.account_id
    where l.dc is distinct from p.debit_count or l.ds is distinct from p.debit_sum or l.cc is distinct from p.credit_count or l.cs is distinct from p.credit_sum`;
  return rows.map((r) => `${r.account_id}: ledger ${r.dc}/${r.ds} debits, ${r.cc}/${r.cs} credits; risk ${r.debit_count}/${r.debit_sum}, ${r.credit_count}/${r.credit_sum}`);
}

const sample = (items: string[]) => (items.length === 0 ? "" : ` e.g. ${items.slice(0, 3).join("; ")}`);

/** Audits the bank against what the clients were told; every check, passed or not. */
export async function auditBank(sql: postgres.Sql, accountTarget: string, bank: Bank, stats: WorkloadStats): Promise<Check[]> {
  const checks: Check[] = [];
  const check = (name: string, problems: string[], detail: string) => checks.push({ name, ok: problems.length === 0, detail: problems.length ? `${problems.length} problems:${sample(problems)}` : detail });

  const balances = await sql`select id, credits_posted - debits_posted as posted, credits_posted - debits_posted - debits_pending as available, overdraft_limit from account.accounts where id in ${sql(bank.accounts)}`;
  const total = balances.reduce((sum, b) => sum + BigInt(b.posted), 0n);
  check("the total is conserved", total === bank.total ? [] : [`posted total ${total}, expected ${bank.total}`], `${bank.accounts.length} accounts hold ${total} in all`);
  check("no account breaks its limit", balances.filter((b) => BigInt(b.available) < -BigInt(b.overdraft_limit)).map((b) => `${b.id}: available ${b.available}`), "every available balance ≥ −limit");
  check(
    "every read of all balances added up to the total, none below the limit",
    [...stats.inconsistentReads, ...stats.negativeReads],
    `${stats.reads} reads (${stats.readErrors} failed and were retried)`,
  );

  const faults = ["Internal", "Unknown", "DataLoss"].filter((code) => stats.errors[code]);
  check(
    "no client was answered with a server fault (INTERNAL, UNKNOWN, DATA_LOSS): only unavailability or a deadline",
    faults.map((code) => `${stats.errors[code]} × ${code}: ${stats.errorSamples[code].join(" | ")}`),
    `errors met and retried past: ${JSON.stringify(stats.errors)}`,
  );

  // What each request id became: its transfers, and the postings of each in the ledger.
  const ids = stats.attempts.map((a) => a.requestId);
  const rows = await sql`
    select t.request_id, t.id, t.status, t.failure_reason, t.from_account_id, t.to_account_id, t.amount,
      (select count(*)::int from account.entries e where e.transfer_id in (t.id, coalesce(t.finalize_ledger_id, t.id)) and e.layer = 'posted' and e.direction = 'debit') as postings,
      (select coalesce(sum(e.amount), 0)::bigint from account.entries e where e.transfer_id in (t.id, coalesce(t.finalize_ledger_id, t.id)) and e.layer = 'posted' and e.direction = 'debit' and e.account_id = t.from_account_id) as debited
    from transactions.transfers t where t.request_id in ${sql(ids)}`;
  const byRequest = new Map<string, postgres.Row[]>();
  for (const r of rows) byRequest.set(r.request_id, [...(byRequest.get(r.request_id) ?? []), r]);

  const acked = stats.attempts.filter((a) => a.outcome === "acked");
  const ackedProblems: string[] = [];
  for (const a of acked) {
    const found = byRequest.get(a.requestId) ?? [];
    const [t] = found;
    if (found.length !== 1) ackedProblems.push(`${a.requestId}: ${found.length} transfers`);
    else if (t.from_account_id !== a.from || t.to_account_id !== a.to || BigInt(t.amount) !== a.amount) ackedProblems.push(`${a.requestId}: stored with other fields`);
    else if (a.status === TransferStatus.POSTED && t.status !== "posted") ackedProblems.push(`${a.requestId}: acknowledged posted, now ${t.status}`);
    else if (t.status === "posted" ? t.postings !== 1 || BigInt(t.debited) !== a.amount : t.postings !== 0) ackedProblems.push(`${a.requestId}: ${t.status} with ${t.postings} postings of ${t.debited}`);
    else if (t.status !== "posted" && !(t.status === "failed" && t.failure_reason === "INSUFFICIENT_FUNDS")) ackedProblems.push(`${a.requestId}: came to rest ${t.status} (${t.failure_reason})`);
  }
  const posted = acked.filter((a) => byRequest.get(a.requestId)?.[0]?.status === "posted").length;
  check("every acknowledged transfer is in the ledger exactly once", ackedProblems, `${acked.length} acknowledged: ${posted} posted once, ${acked.length - posted} refused for funds and posted nowhere`);

  const retried = stats.attempts.filter((a) => a.sends > 1);
  const retryProblems = retried.flatMap((a) => {
    const found = byRequest.get(a.requestId) ?? [];
    if (found.length > 1 || found.some((t) => t.postings > 1)) return [`${a.requestId}: ${found.length} transfers, postings ${found.map((t) => t.postings).join("+")}`];
    return a.outcome === "acked" && found.length !== 1 ? [`${a.requestId}: acknowledged but stored ${found.length} times`] : [];
  });
  const unknown = stats.attempts.filter((a) => a.outcome === "unknown" || a.outcome === "refused");
  check("every retried request was applied once", retryProblems, `${retried.length} requests sent more than once (${retried.reduce((n, a) => n + a.sends, 0)} sends); ${unknown.length} never answered OK, none applied twice`);

  // Nothing in the ledger that no transfer accounts for: postings between the bank's accounts = posted transfers.
  const [{ ledger }] = await sql`select count(*)::int as ledger from account.ledger_transfers where state = 'posted' and debit_account_id in ${sql(bank.accounts)} and credit_account_id in ${sql(bank.accounts)}`;
  const [{ transfers }] = await sql`select count(*)::int as transfers from transactions.transfers where status = 'posted' and from_account_id in ${sql(bank.accounts)} and to_account_id in ${sql(bank.accounts)}`;
  check("the ledger holds no posting that no transfer accounts for", ledger === transfers ? [] : [`${ledger} ledger postings, ${transfers} posted transfers`], `${ledger} postings, ${transfers} posted transfers`);

  const mismatches = await profileMismatches(sql);
  const [{ profiles }] = await sql`select count(*)::int as profiles from risk.profiles`;
  check("every posted transfer's event was applied once downstream (risk's profiles match the ledger)", mismatches, `${profiles} profiles match the ledger's counts and sums`);

  const ledgerClient = createServiceClient(LedgerService, accountTarget, { defaultTimeoutMs: 30_000 });
  try {
    const report = await ledgerClient.reconcile({});
    check(
      "reconciliation reports no breach",
      report.breaches.map((b) => `${b.kind}: ${b.detail}`),
      `${report.accountsChecked} accounts, ${report.entriesChecked} entries, ${report.transfersChecked} transfers checked`,
    );
  } finally {
    ledgerClient.close();
  }
  return checks;
}

/** What happened when, in seconds since the run began. */
export class Journal {
  readonly lines: string[] = [];
  private readonly started = Date.now();

  note(text: string): void {
    this.lines.push(`${((Date.now() - this.started) / 1000).toFixed(1).padStart(5)}s  ${text}`);
  }
}

/** Lets everything come to rest, then audits the bank and checks that every process still runs. */
export async function settleAndAudit(cluster: Cluster, bank: Bank, stats: WorkloadStats, journal: Journal): Promise<Check[]> {
  const sql = postgres(cluster.databaseUrl, { max: 2, onnotice: () => {} });
  try {
    const quiet = await waitForQuiet(sql);
    journal.note(quiet.ok ? "all at rest" : "still not at rest");
    const checks = [quiet, ...(await auditBank(sql, cluster.of("account").map((r) => `127.0.0.1:${r.port}`).join(","), bank, stats))];
    checks.push(await workShares(cluster));
    const exited = cluster.replicas.filter((r) => !r.running).map((r) => r.name);
    checks.push({ name: "no process died of a fault it was not sent", ok: exited.length === 0, detail: exited.length ? `exited: ${exited.join(", ")}` : `${cluster.replicas.length} processes running` });
    return checks;
  } finally {
    await sql.end();
  }
}

/** The sum of a Prometheus metric's samples in a scrape. */
const sumOf = (scrape: string, metric: string) =>
  scrape
    .split("\n")
    .filter((line) => line.startsWith(`${metric}{`) || line.startsWith(`${metric} `))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);

/** Whether every replica took a share of the work: calls served (round robin) and, for the consumers, events handled (one durable shared by the replicas). */
export async function workShares(cluster: Cluster): Promise<Check> {
  const shares = await Promise.all(
    cluster.replicas.map(async (r) => {
      const scrape = await fetch(`http://127.0.0.1:${r.metricsPort}/metrics`).then((res) => res.text(), () => "");
      return { name: r.name, calls: sumOf(scrape, "rpc_server_call_duration_count"), events: sumOf(scrape, "messaging_consumer_messages_total"), consumes: r.service === "risk" || r.service === "transactions" };
    }),
  );
  const idle = shares.filter((s) => s.calls === 0 || (s.consumes && s.events === 0)).map((s) => s.name);
  return {
    name: "every replica took a share of the calls, and of the events where it consumes them",
    ok: idle.length === 0,
    detail: `${idle.length ? `idle: ${idle.join(", ")}; ` : ""}${shares.map((s) => `${s.name} ${s.calls} calls${s.consumes ? `, ${s.events} events` : ""}`).join("; ")} (since each last started)`,
  };
}

/**
 * What a run did and found, to print: the traffic, the faults, every check, and when one failed
 * what each process complained of, and where the cluster's data and logs are kept to look into.
 */
export function report(title: string, bank: Bank, stats: WorkloadStats, journal: Journal, checks: Check[], cluster: Cluster): string {
  const failed = checks.some((c) => !c.ok);
  const outcomes = stats.attempts.reduce<Record<string, number>>((n, a) => ({ ...n, [a.outcome]: (n[a.outcome] ?? 0) + 1 }), {});
  return [
    `${title}: ${bank.accounts.length} accounts, ${stats.attempts.length} transfers asked for (${JSON.stringify(outcomes)}), ${stats.reads} reads`,
    "what happened:",
    ...journal.lines.map((l) => `  ${l}`),
    "checked:",
    ...checks.map((c) => `  ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`),
    ...(failed ? ["what the processes complained of:", complaints(cluster), `the cluster's data, and every replica's log, are kept in ${cluster.keep()}`] : []),
    "",
  ].join("\n");
}

/** Each process's warnings and errors, grouped by message and cause, with how often each came. */
function complaints(cluster: Cluster): string {
  return cluster.replicas
    .map((r) => {
      const counts = new Map<string, number>();
      for (const l of r.logs()) {
        if (l.unparsed === undefined && !["warn", "error", "fatal"].includes(l.level as string)) continue;
        const cause = (l.cause ?? l.err) as { code?: string; message?: string } | string | undefined;
        const key = l.unparsed !== undefined ? String(l.unparsed) : `${l.level} ${l.msg} ${typeof cause === "string" ? cause : (cause?.code ?? cause?.message ?? "")}`.slice(0, 200);
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      return [`${r.name} (${r.running ? "running" : "exited"}):`, ...[...counts].map(([k, n]) => `  ${n} × ${k}`)].join("\n");
    })
    .join("\n");
}

