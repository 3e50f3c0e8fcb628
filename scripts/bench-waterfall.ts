/**
 * npm run bench:waterfall: where a transfer's time goes. Starts Tally as
 * processes (one of each) with every span exported to a receiver in this
 * process and pg_stat_statements loaded, sends BENCH_TRANSFERS transfers
 * through the gateway over gRPC, BENCH_CONCURRENCY (1) at a time (or, with
 * BENCH_BATCH, in BatchCreateTransfers requests of that many; with
 * BENCH_READS=1, GetBalance reads instead of transfers), and prints
 * their throughput and latency, the CPU each process spent per transfer,
 * every statement PostgreSQL ran per transfer, the trace of the median request as
 * a waterfall (each span's service, start offset and duration, indented by
 * parent), and the time each span took per transfer. It reports; it does not assert.
 */
import { Metadata } from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { AccountService } from "../gen/tally/account/v1/account_service_pb";
import { LedgerService } from "../gen/tally/account/v1/ledger_service_pb";
import { RiskService } from "../gen/tally/risk/v1/risk_service_pb";
import { TransactionService } from "../gen/tally/transactions/v1/transaction_service_pb";
import { TransferStatus, type Transfer } from "../gen/tally/transactions/v1/transfer_pb";
import { VELOCITY_RULE_ID } from "../services/risk/src/domain/default-rules";
import { createServiceClient, type ClientOf } from "../platform/grpc/client";
import { newId } from "../platform/ids";
import { startCluster, type Cluster } from "../test/support/cluster";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../test/support/otlp";
import { envInt, fundFromSettlement, mapLimit, openAccounts, percentile, printColumns, round2 } from "./bench-support";
import { systemCpuSeconds } from "./process-cpu";

const TRANSFERS = envInt("BENCH_TRANSFERS", 200);
// Transfers in flight at once: 1 shows the path's own latency; more shows what load does to it.
const CONCURRENCY = envInt("BENCH_CONCURRENCY", 1);
// Transfers per request: 1 sends CreateTransfer; more sends BatchCreateTransfers of that many.
const BATCH = envInt("BENCH_BATCH", 1);
// BENCH_READS=1: balance reads (GetBalance) in place of transfers, BENCH_TRANSFERS of them.
const READS = process.env.BENCH_READS === "1";
// BENCH_TRACING=off: no spans exported, to see what tracing costs (and no waterfall).
const TRACING = process.env.BENCH_TRACING !== "off";
const ACCOUNTS = 1_000;
const CURRENCY = "USD";

/** The spans of one trace as indented rows: service, name, start offset and duration in ms. */
function waterfall(spans: ReceivedSpan[]): string[][] {
  const t0 = Math.min(...spans.map((s) => s.startMs));
  const children = new Map<string, ReceivedSpan[]>();
  for (const s of spans) children.set(s.parentSpanId, [...(children.get(s.parentSpanId) ?? []), s]);
  const ids = new Set(spans.map((s) => s.spanId));
  const rows: string[][] = [];
  const walk = (span: ReceivedSpan, depth: number) => {
    rows.push([span.service, `${"  ".repeat(depth)}${span.name}`, round2(span.startMs - t0).toFixed(2), round2(span.endMs - span.startMs).toFixed(2)]);
    for (const child of (children.get(span.spanId) ?? []).sort((a, b) => a.startMs - b.startMs)) walk(child, depth + 1);
  };
  for (const root of spans.filter((s) => !ids.has(s.parentSpanId)).sort((a, b) => a.startMs - b.startMs)) walk(root, 0);
  return rows;
}

type Clients = { transactions: ClientOf<typeof TransactionService>; reads: ClientOf<typeof AccountService>; token: string; accounts: string[] };

/** Funded accounts, the velocity rule off, and a client of the gateway. */
async function prepare(cluster: Cluster): Promise<Clients> {
  const accountTarget = `127.0.0.1:${cluster.of("account")[0].port}`;
  const gateway = `127.0.0.1:${cluster.of("gateway")[0].port}`;
  const options = { defaultTimeoutMs: 30_000 };
  const internal = { accounts: createServiceClient(AccountService, accountTarget, options), ledger: createServiceClient(LedgerService, accountTarget, options) };
  const accounts = await openAccounts(internal, ACCOUNTS, CURRENCY, 8);
  await fundFromSettlement(internal, accounts, 100_000_000n, CURRENCY);
  internal.accounts.close();
  internal.ledger.close();
  const analyst = new Metadata();
  analyst.set("authorization", `Bearer ${await cluster.token("analyst")}`);
  const risk = createServiceClient(RiskService, gateway, options);
  await risk.disableRule({ ruleId: VELOCITY_RULE_ID }, { metadata: analyst });
  risk.close();
  return {
    transactions: createServiceClient(TransactionService, gateway, options),
    reads: createServiceClient(AccountService, gateway, options),
    token: await cluster.token("teller"),
    accounts,
  };
}

interface Sent {
  traceId: string;
  ms: number;
}

/** Sends the transfers, CONCURRENCY requests at a time, each request starting its own trace; how each went, and how the transfers ended, by status. */
async function send({ transactions, reads, token, accounts }: Clients): Promise<{ sent: Sent[]; statuses: Record<string, number>; seconds: number }> {
  const sent: Sent[] = [];
  const statuses: Record<string, number> = {};
  const request = (i: number) => ({
    requestId: newId(),
    fromAccountId: accounts[i % accounts.length],
    toAccountId: accounts[(i * 7 + 1) % accounts.length],
    amount: { amount: 100n, currency: CURRENCY },
  });
  const count = (transfer: Transfer | undefined) => {
    // Why a transfer did not post: risk's decision, or its fallback when risk could not answer; or the batch refused the item.
    const why = !transfer ? "refused" : transfer.status === TransferStatus.POSTED ? "" : ` (${transfer.risk?.fallback ? "risk fallback" : (transfer.risk?.reasons.join(", ") ?? "")})`;
    const key = `${transfer ? TransferStatus[transfer.status] : ""}${why}`;
    statuses[key] = (statuses[key] ?? 0) + 1;
  };
  const started = performance.now();
  await mapLimit(Array.from({ length: Math.ceil(TRANSFERS / BATCH) }, (_, i) => i), CONCURRENCY, async (r) => {
    // The client starts the trace, so it knows the id to look up.
    const traceId = randomBytes(16).toString("hex");
    const metadata = new Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    metadata.set("traceparent", `00-${traceId}-${randomBytes(8).toString("hex")}-01`);
    const t0 = performance.now();
    if (READS) {
      await reads.getBalance({ accountId: accounts[(r * 7) % accounts.length] }, { metadata });
      statuses.read = (statuses.read ?? 0) + 1;
    } else if (BATCH === 1) count((await transactions.createTransfer(request(r), { metadata })).transfer);
    else {
      const items = Array.from({ length: Math.min(BATCH, TRANSFERS - r * BATCH) }, (_, i) => request(r * BATCH + i));
      for (const result of (await transactions.batchCreateTransfers({ transfers: items }, { metadata })).results) count(result.transfer);
    }
    sent.push({ traceId, ms: performance.now() - t0 });
  });
  return { sent, statuses, seconds: (performance.now() - started) / 1000 };
}

/** Every statement PostgreSQL ran, per transfer: the transfers' own and the background's (relays, consumers, sweepers). */
interface StatementStats {
  calls: string;
  total_exec_time: number;
  query: string;
}

function printStatements(statements: readonly StatementStats[]): void {
  const calls = statements.reduce((a, r) => a + Number(r.calls), 0);
  process.stdout.write(`statements per transfer: ${round2(calls / TRANSFERS)}, of which:\n`);
  printColumns(
    ["per transfer", "ms in PostgreSQL", "statement"],
    statements.slice(0, 30).map((r) => [round2(Number(r.calls) / TRANSFERS).toString(), round2(Number(r.total_exec_time) / TRANSFERS).toFixed(3), String(r.query).replace(/\s+/g, " ").slice(0, 140)]),
  );
  process.stdout.write("\n");
}

/** The median transfer's trace as a waterfall, then each span's time per transfer over the last three quarters sent (the first warm the processes up). */
function printSpans(otlp: OtlpReceiver, sent: Sent[]): void {
  const median = [...sent].sort((a, b) => a.ms - b.ms)[Math.floor(sent.length / 2)];
  printColumns(["service", "span", "start ms", "ms"], waterfall(otlp.trace(median.traceId)));
  const traced = new Set(sent.slice(Math.floor(sent.length / 4)).map((s) => s.traceId));
  const transfers = traced.size * BATCH;
  const totals = new Map<string, { ms: number; count: number }>();
  for (const s of otlp.spans.filter((span) => traced.has(span.traceId))) {
    const key = `${s.service}\t${s.name}`;
    const t = totals.get(key) ?? { ms: 0, count: 0 };
    totals.set(key, { ms: t.ms + s.endMs - s.startMs, count: t.count + 1 });
  }
  process.stdout.write(`\nper transfer, over the last ${transfers}:\n`);
  printColumns(
    ["service", "span", "count", "ms"],
    [...totals.entries()].sort((a, b) => b[1].ms - a[1].ms).map(([key, t]) => [...key.split("\t"), round2(t.count / transfers).toString(), round2(t.ms / transfers).toFixed(2)]),
  );
}

async function main(): Promise<void> {
  const otlp = await startOtlpReceiver();
  const cluster = await startCluster({
    replicas: 1,
    trackStatements: true,
    env: { OTEL_TRACES_EXPORTER: TRACING ? "otlp" : "none", OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint, OTEL_BSP_SCHEDULE_DELAY: "100", LOG_LEVEL: "warn" },
  });
  try {
    const clients = await prepare(cluster);
    const cpu = () => systemCpuSeconds(cluster.replicas);
    const stats = postgres(cluster.databaseUrl, { max: 1, onnotice: () => {} });
    await stats`select pg_stat_statements_reset()`;
    const cpuBefore = cpu();
    const { sent, statuses, seconds } = await send(clients);
    const cpuAfter = cpu();
    const statements = await stats<StatementStats[]>`select calls, total_exec_time, query from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database()) and query not like '%pg_stat_statements%' order by calls desc`;
    await stats.end();
    clients.transactions.close();
    clients.reads.close();

    const latencies = sent.map((s) => s.ms).sort((a, b) => a - b);
    process.stdout.write(`${TRANSFERS} ${READS ? "reads" : "transfers"}${BATCH > 1 ? ` in batches of ${BATCH}` : ""}, ${CONCURRENCY}${BATCH > 1 ? " batches" : ""} at a time: ${Math.round(TRANSFERS / seconds)}/s, p50 ${round2(percentile(latencies, 50))} ms, p99 ${round2(percentile(latencies, 99))} ms; ${JSON.stringify(statuses)}\n`);
    const cpuMs = Object.entries(cpuAfter).map(([p, s]) => [p, round2((1000 * (s - cpuBefore[p])) / TRANSFERS)] as const);
    process.stdout.write(`CPU ms per ${READS ? "read" : "transfer"}: ${cpuMs.map(([p, ms]) => `${p} ${ms}`).join(", ")}; all ${round2(cpuMs.reduce((a, [, ms]) => a + ms, 0))}\n\n`);
    printStatements(statements);
    if (TRACING) {
      // Let the events be consumed and the last spans exported.
      await new Promise((r) => setTimeout(r, 3000));
      printSpans(otlp, sent);
    }
  } finally {
    await cluster.stop();
    await otlp.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.stack : String(err));
    process.exit(1);
  },
);
