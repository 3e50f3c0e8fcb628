import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { sql } from "drizzle-orm";
import type { Account } from "../../../../gen/tally/account/v1/account_pb";
import { LedgerTransferState, PostingMode, type LedgerTransfer } from "../../../../gen/tally/account/v1/ledger_pb";
import { RiskProfileSchema, WindowStatsSchema, type RiskProfile } from "../../../../gen/tally/risk/v1/risk_pb";
import { inLockOrder } from "../../../../platform/db/lock-order";
import { pipelined } from "../../../../platform/db/pipeline";
import { insertRows } from "../../../../platform/db/recordset";
import { accounts, activity, countedHolds, counterparties, profiles } from "../db/schema";
import type { RiskDb, RiskTx } from "../db/types";
import { accountViewOf } from "./account-view";
import { ageInDays } from "./facts";

const BUCKET_MS = 10_000;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
// Raw SQL fragments take timestamps as ISO text, cast by PostgreSQL.
const iso = (at: Date) => sql`${at.toISOString()}::timestamptz`;
const bucketOf = (at: Date) => new Date(Math.floor(at.getTime() / BUCKET_MS) * BUCKET_MS);
/** An activity row's key: its account and bucket. */
const bucketKey = (accountId: string, at: Date) => `${accountId}|${bucketOf(at).toISOString()}`;
/** The activity columns each window sums. */
const WINDOW_SUMS = ["debit_count", "debit_sum", "credit_count", "credit_sum", "declined_count"] as const;
/** An upsert's `set` that adds the new row's counts and sums to the stored ones. */
const addedUp = (table: "profiles" | "activity") =>
  sql.raw(["debit_count", "debit_sum", "credit_count", "credit_sum"].map((c) => `${c} = ${table}.${c} + excluded.${c}`).join(", "));

interface Movement {
  accountId: string;
  counterpartyId: string;
  currency: string;
  at: Date;
  debit: bigint;
  credit: bigint;
}

/** What ledger transfers mean for each of their two accounts. */
function movementsOf(transfers: LedgerTransfer[]): Movement[] {
  return transfers
    .flatMap((t) => {
      const at = t.createdAt ? timestampDate(t.createdAt) : new Date();
      return [
        { accountId: t.debitAccountId, counterpartyId: t.creditAccountId, currency: t.currency, at, debit: t.amount, credit: 0n },
        { accountId: t.creditAccountId, counterpartyId: t.debitAccountId, currency: t.currency, at, debit: 0n, credit: t.amount },
      ];
    });
}

/**
 * Per-account aggregates learnt from the ledger's events: lifetime totals,
 * 10-second activity buckets summed into sliding windows, and counterparties;
 * and, in the same buckets, the attempts risk declined, from its assessments.
 * Every update is an increment or a max, so events may arrive in any order.
 */
export class Profiles {
  constructor(private readonly db: RiskDb) {}

  /**
   * Records the transfers of one event; runs inside the event's inbox transaction. The lifetime
   * totals are the money that moved (what was posted, captures included: they equal the ledger's);
   * the windows and counterparties are the money asked to move — a transfer posted at once, or a
   * hold when it is made, once (its capture is the same movement) — so a run of authorizations
   * counts towards velocity before anything is captured.
   */
  async recordTransfers(tx: RiskTx, transfers: LedgerTransfer[]): Promise<void> {
    const moved = movementsOf(transfers.filter((t) => t.state === LedgerTransferState.POSTED));
    const holdIds = [...new Set(transfers.filter((t) => t.mode === PostingMode.PENDING).map((t) => t.id))].sort();
    const uncounted = new Set(
      holdIds.length === 0
        ? []
        : (await insertRows(tx, countedHolds, holdIds.map((transferId) => ({ transferId })), { onConflict: sql`(transfer_id) do nothing`, returning: true })).map((r) => r.transferId),
    );
    const asked = movementsOf(
      transfers.filter((t) =>
        // A hold, in whichever event first shows it; a posting, unless it captures a hold.
        t.mode === PostingMode.PENDING ? uncounted.delete(t.id) : t.state === LedgerTransferState.POSTED && t.mode !== PostingMode.POST_PENDING,
      ),
    );
    if (moved.length === 0 && asked.length === 0) return;
    // Aggregated and sorted first: one row per key per statement, locked in the same order by every replica.
    const perAccount = aggregate(moved, (m) => m.accountId);
    const perBucket = aggregate(asked, (m) => bucketKey(m.accountId, m.at));
    const pairs = new Map<string, Movement>();
    for (const m of asked) {
      const key = `${m.accountId}|${m.counterpartyId}`;
      const seen = pairs.get(key);
      if (!seen || seen.at < m.at) pairs.set(key, m);
    }
    const sortedPairs = inLockOrder(pairs.entries(), ([key]) => key).map(([, m]) => m);
    // Independent of one another: pipelined, one round trip for the three.
    await pipelined([
      insertRows(
        tx,
        profiles,
        perAccount.map((a) => ({ ...a, firstActivityAt: a.first, lastActivityAt: a.last })),
        {
          onConflict: sql`(account_id) do update set
            first_activity_at = least(profiles.first_activity_at, excluded.first_activity_at),
            last_activity_at = greatest(profiles.last_activity_at, excluded.last_activity_at),
            ${addedUp("profiles")}`,
        },
      ),
      insertRows(
        tx,
        activity,
        perBucket.map((b) => ({ ...b, bucket: bucketOf(b.first) })),
        {
          onConflict: sql`(account_id, bucket) do update set ${addedUp("activity")}`,
        },
      ),
      insertRows(
        tx,
        counterparties,
        sortedPairs.map((m) => ({ accountId: m.accountId, counterpartyId: m.counterpartyId, lastSeenAt: m.at })),
        { onConflict: sql`(account_id, counterparty_id) do update set last_seen_at = greatest(counterparties.last_seen_at, excluded.last_seen_at)` },
      ),
    ]);
  }

  /**
   * Counts the transfers risk declined, each against its source account in the bucket of when it
   * was decided; runs inside the transaction that stores the assessments, which decides each once.
   */
  async recordDeclines(tx: RiskTx, declined: { accountId: string; at: Date }[]): Promise<void> {
    if (declined.length === 0) return;
    const perBucket = new Map<string, { accountId: string; bucket: Date; declinedCount: bigint }>();
    for (const { accountId, at } of declined) {
      const key = bucketKey(accountId, at);
      const row = perBucket.get(key) ?? { accountId, bucket: bucketOf(at), declinedCount: 0n };
      row.declinedCount += 1n;
      perBucket.set(key, row);
    }
    // One row per key, locked in the same order as the ledger's events lock them.
    const rows = inLockOrder(perBucket.entries(), ([key]) => key).map(([, row]) => row);
    await insertRows(tx, activity, rows, { onConflict: sql`(account_id, bucket) do update set declined_count = activity.declined_count + excluded.declined_count` });
  }

  /** Keeps risk's view of an account current; runs inside the event's inbox transaction. */
  async recordAccount(tx: RiskTx, account: Account): Promise<void> {
    const row = accountViewOf(account);
    await tx
      .insert(accounts)
      .values(row)
      .onConflictDoUpdate({
        target: accounts.id,
        set: { status: row.status, metadata: row.metadata, updatedAt: row.updatedAt, version: row.version },
        setWhere: sql`excluded.version > ${accounts.version}`,
      });
  }

  /**
   * The profile of an account as of `now`, in one round trip: windows are the buckets that end
   * after now − window. Read through `db`, or a transaction that has just recorded an event (monitoring).
   */
  async profile(accountId: string, now = new Date(), db: RiskDb | RiskTx = this.db): Promise<RiskProfile> {
    const [profile] = await this.profiles([accountId], now, db);
    return profile;
  }

  /**
   * The profiles of several accounts as of `now`, in the order asked, in one query. `past`: `now` is
   * an earlier time (a late event's), so the windows leave out the buckets that began after it; not
   * for the present, whose newest bucket is keyed by the ledger's clock, which may run ahead.
   */
  async profiles(accountIds: string[], now = new Date(), db: RiskDb | RiskTx = this.db, past = false): Promise<RiskProfile[]> {
    const since = (window: number) => iso(new Date(now.getTime() - window - BUCKET_MS));
    const sums = (column: string, window: number) =>
      sql.raw(`coalesce(sum(${column}) filter (where bucket > `).append(sql`${since(window)}), 0)::text`);
    const windows = ([["m", MINUTE], ["h", HOUR], ["d", DAY]] as const).flatMap(([name, window]) =>
      WINDOW_SUMS.map((column) => sql`${sums(column, window)} as ${sql.raw(`${name}_${column}`)}`),
    );
    const ids = sql`${`{${accountIds.join(",")}}`}::uuid[]`;
    const rows = (await db.execute(sql`
      with w as (
        select account_id, ${sql.join(windows, sql`, `)} from ${activity}
        where account_id = any(${ids}) and bucket > ${since(DAY)} ${past ? sql`and bucket <= ${iso(now)}` : sql``} group by account_id),
      c as (
        select account_id, count(*)::int as partners from ${counterparties}
        where account_id = any(${ids}) and last_seen_at > ${iso(new Date(now.getTime() - DAY))} group by account_id)
      select ids.account_id as asked_id, w.*, coalesce(c.partners, 0) as partners, p.currency, p.first_activity_at, p.last_activity_at,
             p.debit_count, p.debit_sum, p.credit_count, p.credit_sum, a.opened_at, a.currency as account_currency
      from unnest(${ids}) as ids(account_id)
      left join w on w.account_id = ids.account_id
      left join c on c.account_id = ids.account_id
      left join ${profiles} p on p.account_id = ids.account_id
      left join ${accounts} a on a.id = ids.account_id`)) as unknown as ProfileRow[];
    const byAccount = new Map(rows.map((row) => [row.asked_id, row]));
    return accountIds.map((accountId) => profileOf(accountId, byAccount.get(accountId)!, now));
  }

  /** Buckets and counterparties older than the longest window are of no more use. */
  async prune(now = new Date()): Promise<void> {
    const cutoff = new Date(now.getTime() - DAY - HOUR);
    await this.db.delete(activity).where(sql`${activity.bucket} < ${iso(cutoff)}`);
    await this.db.delete(counterparties).where(sql`${counterparties.lastSeenAt} < ${iso(cutoff)}`);
    // A hold finalized later shows again at its own time, outside every window by then.
    await this.db.delete(countedHolds).where(sql`${countedHolds.countedAt} < ${iso(cutoff)}`);
  }
}

/** A profile from its row of the profile query: an account with no activity in a window has no sums there. */
function profileOf(accountId: string, row: ProfileRow, now: Date): RiskProfile {
  const stats = (name: "m" | "h" | "d") =>
    create(WindowStatsSchema, {
      debitCount: BigInt(row[`${name}_debit_count`] ?? 0),
      debitSum: BigInt(row[`${name}_debit_sum`] ?? 0),
      creditCount: BigInt(row[`${name}_credit_count`] ?? 0),
      creditSum: BigInt(row[`${name}_credit_sum`] ?? 0),
      declinedCount: BigInt(row[`${name}_declined_count`] ?? 0),
    });
  const openedAt = row.opened_at ? new Date(row.opened_at) : undefined;
  return create(RiskProfileSchema, {
    accountId,
    currency: row.currency ?? row.account_currency ?? "",
    lastMinute: stats("m"),
    lastHour: stats("h"),
    lastDay: stats("d"),
    distinctCounterparties24h: BigInt(row.partners),
    openedAt: openedAt ? timestampFromDate(openedAt) : undefined,
    firstActivityAt: row.first_activity_at ? timestampFromDate(new Date(row.first_activity_at)) : undefined,
    lastActivityAt: row.last_activity_at ? timestampFromDate(new Date(row.last_activity_at)) : undefined,
    totalDebitCount: BigInt(row.debit_count ?? 0),
    totalDebitSum: BigInt(row.debit_sum ?? 0),
    totalCreditCount: BigInt(row.credit_count ?? 0),
    totalCreditSum: BigInt(row.credit_sum ?? 0),
    accountAgeDays: openedAt ? ageInDays(openedAt, now) : 0n,
  });
}

type WindowColumns = `${"m" | "h" | "d"}_${(typeof WINDOW_SUMS)[number]}`;

/** One row of the profile query: window sums as text (null with no activity in the last day), lifetime columns null for an account with no activity. */
type ProfileRow = Record<WindowColumns, string | null> & {
  asked_id: string;
  partners: number;
  currency: string | null;
  first_activity_at: Date | string | null;
  last_activity_at: Date | string | null;
  debit_count: bigint | string | null;
  debit_sum: bigint | string | null;
  credit_count: bigint | string | null;
  credit_sum: bigint | string | null;
  opened_at: Date | string | null;
  account_currency: string | null;
};

interface Totals {
  accountId: string;
  currency: string;
  first: Date;
  last: Date;
  debitCount: bigint;
  debitSum: bigint;
  creditCount: bigint;
  creditSum: bigint;
}

function aggregate(moves: Movement[], keyOf: (m: Movement) => string): Totals[] {
  const totals = new Map<string, Totals>();
  for (const m of moves) {
    const key = keyOf(m);
    const t = totals.get(key) ?? { accountId: m.accountId, currency: m.currency, first: m.at, last: m.at, debitCount: 0n, debitSum: 0n, creditCount: 0n, creditSum: 0n };
    if (m.at < t.first) t.first = m.at;
    if (m.at > t.last) t.last = m.at;
    if (m.debit > 0n) {
      t.debitCount += 1n;
      t.debitSum += m.debit;
    } else {
      t.creditCount += 1n;
      t.creditSum += m.credit;
    }
    totals.set(key, t);
  }
  return inLockOrder(totals.entries(), ([key]) => key).map(([, t]) => t);
}
