/**
 * What the benchmarks share: how one runs (its own database and stream,
 * torn down however it ends), settings from the environment, bounded
 * concurrency, timing and percentiles, the outbox backlog, the machine they
 * ran on, an aligned table, and the JSON results file.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type postgres from "postgres";
import type { AccountService } from "../gen/tally/account/v1/account_service_pb";
import { PostingMode, PostingResult } from "../gen/tally/account/v1/ledger_pb";
import type { LedgerService } from "../gen/tally/account/v1/ledger_service_pb";
import type { RiskService } from "../gen/tally/risk/v1/risk_service_pb";
import type { ClientOf } from "../platform/grpc/client";
import { newId } from "../platform/ids";
import { Lifecycle } from "../platform/lifecycle";
import { projectRoot } from "../platform/project-root";
import { createTestDatabase, testLogger, testStream, type TestDatabase, type TestStream } from "../test/support/infra";

type Sql = postgres.Sql;

/** A positive integer from the environment, or the fallback when unset or blank. */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return value;
}

/** An integer from 0 to n-1. */
export const randomInt = (rand: () => number, n: number) => Math.floor(rand() * n);

/** Runs fn over items with at most `limit` calls in flight; results keep the items' order. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export const elapsedMs = (since: bigint) => Number(process.hrtime.bigint() - since) / 1e6;

export const bump = (counts: Record<string, number>, key: string) => {
  counts[key] = (counts[key] ?? 0) + 1;
};

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Rounded to two decimals, for reports. */
export const round2 = (n: number) => Math.round(n * 100) / 100;

/** The schemas whose outbox a benchmark may watch. */
export type OutboxSchema = "account" | "risk" | "transactions";

/** Events a service's relay has not yet published; -1 when it cannot be read: a report, not a reason to stop. */
export async function outboxBacklog(sql: Sql, schema: OutboxSchema = "account"): Promise<number> {
  try {
    const [row] = await sql.unsafe(`select count(*)::int as n from ${schema}.outbox where published_at is null and parked_at is null`);
    return row.n as number;
  } catch {
    return -1;
  }
}

/** Lets a relay catch up before a scenario, so one scenario's backlog does not slow the next. */
export async function waitForOutbox(sql: Sql, schema: OutboxSchema = "account", timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while ((await outboxBacklog(sql, schema)) > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  totalMemoryGiB: number;
  platform: string;
  node: string;
}

export function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? "unknown",
    totalMemoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
  };
}

/** The server's version string, or "unknown". */
export async function postgresVersion(sql: Sql): Promise<string> {
  const [pg] = await sql`select current_setting('server_version') as version`.catch(() => [{ version: "unknown" }]);
  return String(pg.version);
}

export const machineLine = (host: Machine, postgres: string) =>
  `machine: ${host.cpus} × ${host.cpuModel}, ${host.totalMemoryGiB} GiB, ${host.platform}, node ${host.node}, PostgreSQL ${postgres}`;

/** A table with a rule under the header: the first column left-aligned, the others right-aligned. */
export function printColumns(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows) console.log(line(row));
}

/** Writes bench-results/<name>.json; returns its path relative to the working directory. */
export function writeResults(name: string, report: unknown): string {
  const dir = path.join(projectRoot(), "bench-results");
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return path.relative(process.cwd(), file);
}

/** Runs a benchmark's main and exits with its code; a setup failure prints its stack and exits 1. */
/** What every benchmark runs with. */
export interface BenchRun {
  /** Its own database and stream, dropped when it ends. */
  db: TestDatabase;
  stream: TestStream;
  /** Where the services it starts register how they stop; they stop after what atEnd closes. */
  lifecycle: Lifecycle;
  /** BENCH_SECONDS per scenario (10) and BENCH_SEED (42). */
  seconds: number;
  seed: number;
  /** The caller's DATABASE_POOL_SIZE, for the services a benchmark starts. */
  extraEnv: Record<string, string>;
  /** Runs when the benchmark ends, however it ends: closes its clients and connections. */
  atEnd(close: () => unknown): void;
}

/**
 * Runs a benchmark and exits with its code: 0, or 1 with the error. Whatever
 * happens, its clients are closed, its services stopped, and its database and
 * stream dropped.
 */
export function runBench(main: (run: BenchRun) => Promise<number>): void {
  const run = async () => {
    const closers: (() => unknown)[] = [];
    const db = await createTestDatabase();
    const stream = testStream();
    const lifecycle = new Lifecycle(testLogger());
    try {
      return await main({
        db,
        stream,
        lifecycle,
        seconds: envInt("BENCH_SECONDS", 10),
        seed: envInt("BENCH_SEED", 42),
        extraEnv: process.env.DATABASE_POOL_SIZE ? { DATABASE_POOL_SIZE: process.env.DATABASE_POOL_SIZE } : {},
        atEnd: (close) => closers.push(close),
      });
    } finally {
      for (const close of closers.reverse()) await close();
      await lifecycle.stop("bench done");
      await cleanUp(db, stream);
    }
  };
  run().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err instanceof Error ? err.stack : String(err));
      process.exit(1);
    },
  );
}

/** Drops the benchmark's database and stream; a leftover one is worth a warning, not a failed run. */
async function cleanUp(...resources: { drop?: () => Promise<void>; delete?: () => Promise<void> }[]): Promise<void> {
  const results = await Promise.allSettled(resources.map((r) => (r.drop ?? r.delete)!.call(r)));
  for (const r of results) if (r.status === "rejected") console.error(`cleanup: ${String(r.reason)}`);
}

type SetupClients = {
  accounts: ClientOf<typeof AccountService>;
  ledger: ClientOf<typeof LedgerService>;
};

/** Opens `count` customer accounts (bench-0, bench-1, …), a few at a time; returns their ids. */
export async function openAccounts(clients: SetupClients, count: number, currency: string, concurrency: number): Promise<string[]> {
  const started = process.hrtime.bigint();
  const ids = await mapLimit(Array.from({ length: count }, (_, i) => i), concurrency, async (i) => {
    const { account } = await clients.accounts.createAccount({ requestId: newId(), customerId: `bench-${i}`, currency });
    return account!.id;
  });
  console.log(`setup: opened ${ids.length} accounts in ${(elapsedMs(started) / 1000).toFixed(1)} s`);
  return ids;
}

/** Money in from the settlement account; batches in sequence, since each one locks the settlement row anyway. */
export async function fundFromSettlement(clients: SetupClients, ids: string[], amount: bigint, currency: string, batch = 1000): Promise<void> {
  const started = process.hrtime.bigint();
  const settlement = (await clients.accounts.getSystemAccount({ currency })).account!.id;
  for (let start = 0; start < ids.length; start += batch) {
    const transfers = ids
      .slice(start, start + batch)
      .map((id) => ({ id: newId(), debitAccountId: settlement, creditAccountId: id, amount, currency, mode: PostingMode.POST }));
    const { results } = await clients.ledger.postTransfers({ transfers });
    const failed = results.find((r) => r.result !== PostingResult.OK);
    if (failed) throw new Error(`funding failed: ${PostingResult[failed.result]} for transfer ${failed.transferId}`);
  }
  console.log(`setup: funded ${ids.length} accounts in ${(elapsedMs(started) / 1000).toFixed(1)} s`);
}

/** Risk learns of accounts and transfers from events: waits until the last funding shows in its profile. */
export async function waitForProfile(clients: { risk: Pick<ClientOf<typeof RiskService>, "getRiskProfile"> }, accountId: string, timeoutMs = 60_000): Promise<void> {
  const started = process.hrtime.bigint();
  const until = Date.now() + timeoutMs;
  for (;;) {
    const { profile } = await clients.risk.getRiskProfile({ accountId });
    if ((profile?.totalCreditCount ?? 0n) > 0n) break;
    if (Date.now() > until) throw new Error(`risk's profile of ${accountId} showed no activity within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log(`setup: events reached risk's profiles in ${(elapsedMs(started) / 1000).toFixed(1)} s`);
}
