import { create } from "@bufbuild/protobuf";
import { context, type Context } from "@opentelemetry/api";
import { and, desc, eq, gte, inArray, isNull, lt, lte, or, sql } from "drizzle-orm";
import {
  TransferCreatedSchema,
  TransferDeclinedSchema,
  TransferExpiredSchema,
  TransferFailedSchema,
  TransferHeldSchema,
  TransferPostedSchema,
  TransferReversedSchema,
  TransferVoidedSchema,
} from "../../../../gen/tally/events/v1/events_pb";
import type { Transfer } from "../../../../gen/tally/transactions/v1/transfer_pb";
import { insertRows, recordset } from "../../../../platform/db/recordset";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import { GroupCommit, type GroupCommitOptions } from "../../../../platform/group-commit";
import { appendEvents, type EventPayload, type NewEvent, type OutboxWriter } from "../../../../platform/outbox/append";
import { cursorId, decodePageToken, pageOf, pageSize, type Page } from "../../../../platform/paging";
import { requireId } from "../../../../platform/validation";
import { transfers, type TransferRow, type TransferStatusName } from "../db/schema";
import type { TransactionsDb, TransactionsTx } from "../db/types";
import { transferMessage } from "../proto";

export type TransferChanges = Partial<Omit<TransferRow, "id" | "createdAt">>;

/** The event that announces a transfer reaching a status. */
export function eventFor(status: TransferStatusName, transfer: Transfer, reversal?: Transfer): EventPayload | undefined {
  switch (status) {
    case "created":
      return { case: "transferCreated", value: create(TransferCreatedSchema, { transfer }) };
    case "held":
      return { case: "transferHeld", value: create(TransferHeldSchema, { transfer }) };
    case "posted":
      return { case: "transferPosted", value: create(TransferPostedSchema, { transfer }) };
    case "declined":
      return { case: "transferDeclined", value: create(TransferDeclinedSchema, { transfer }) };
    case "failed":
      return { case: "transferFailed", value: create(TransferFailedSchema, { transfer }) };
    case "voided":
      return { case: "transferVoided", value: create(TransferVoidedSchema, { transfer }) };
    case "expired":
      return { case: "transferExpired", value: create(TransferExpiredSchema, { transfer }) };
    case "reversed":
      return { case: "transferReversed", value: create(TransferReversedSchema, { transfer, reversal }) };
  }
}

/**
 * Transfers as stored, and every change to them: a change of status is
 * written with its event in one transaction (the outbox).
 */
export class Transfers {
  /** Changes from concurrent requests, committed together: see change(). */
  private readonly changes: GroupCommit<Change, TransferRow | undefined>;

  constructor(
    private readonly db: TransactionsDb,
    private readonly outbox: OutboxWriter,
    private readonly afterCommit: () => void = () => {},
  ) {
    // A transfer's changes wait for one another (its id is the key): no two in one group, nor in two at once.
    this.changes = new GroupCommit((groups) => this.commitChanges(groups.flat()).then((rows) => rows.map((row) => [row])), CHANGE_GROUPS, (c) => [c.id]);
  }

  async get(transferId: string): Promise<TransferRow> {
    const id = requireId(transferId, "transfer_id");
    const [row] = await this.db.select().from(transfers).where(eq(transfers.id, id));
    if (!row) throw new DomainError(ErrorReason.TRANSFER_NOT_FOUND, `transfer ${id} not found`, "transfer_id");
    return row;
  }

  async find(ids: string[]): Promise<TransferRow[]> {
    if (ids.length === 0) return [];
    return inOrder(ids, await this.db.select().from(transfers).where(inArray(transfers.id, ids)));
  }

  /** Inserts a new transfer and its transfer_created event, inside the caller's transaction; an id taken already is refused. */
  async insert(tx: TransactionsTx, row: NewTransfer): Promise<TransferRow> {
    const [created] = await this.insertMany(tx, [{ row }]);
    if (!created) throw takenId(row.id);
    return created;
  }

  /**
   * Inserts new transfers, each with its transfer_created event in its own request's trace, inside
   * the caller's transaction, in one statement each; returns them in order, undefined where the id was taken.
   */
  async insertMany(tx: TransactionsTx, news: { row: NewTransfer; context?: Context }[]): Promise<(TransferRow | undefined)[]> {
    const inserted = await insertRows(
      tx,
      transfers,
      news.map((n) => n.row),
      { onConflict: sql`(id) do nothing`, returning: true },
    );
    const byId = new Map(inserted.map((r) => [r.id, r]));
    const rows = news.map((n) => byId.get(n.row.id));
    await appendEvents(tx, this.outbox, rows.flatMap((row, i) => (row ? eventsOf(row, undefined, news[i].context) : [])));
    return rows;
  }

  /**
   * Applies changes to a transfer (only while `expected` holds, when given) and
   * announces a new status; returns the row as changed, or undefined when the
   * expectation did not hold.
   */
  async change(id: string, changes: TransferChanges, expected?: Expected, tx?: TransactionsTx): Promise<TransferRow | undefined> {
    if (tx) {
      const [row] = await updateMany(tx, [{ id, changes, expected }]);
      if (row && changes.status) await this.announce(tx, row);
      return row;
    }
    // Shared with the changes other requests make meanwhile (group commit): one transaction, and one statement per set of columns.
    const [row] = await this.changes.submit([{ id, changes, expected, context: context.active() }]);
    return row;
  }

  /** One transaction for the changes of a group: their updates in a statement per set of columns changed, then every event in one insert. */
  private async commitChanges(group: Change[]): Promise<(TransferRow | undefined)[]> {
    // Steps that announce nothing, all setting the same columns (risk's decision): one UPDATE, atomic
    // by itself, so no transaction and its two round trips.
    if (group.every((c) => !c.changes.status) && new Set(group.map((c) => shapeOf(c.changes))).size === 1) return updateMany(this.db, group);
    const rows = await this.db.transaction(async (tx) => {
      const changed = await updateMany(tx, group);
      // Each event in its own request's trace: the transaction is the first request's.
      const events = changed.flatMap((row, i) => (row && group[i].changes.status ? eventsOf(row, undefined, group[i].context) : []));
      await appendEvents(tx, this.outbox, events);
      return changed;
    });
    this.afterCommit();
    return rows;
  }

  /** Saves a transfer's changes; a reversal that comes to an end with them also settles what it set aside (settleReversal). */
  async save(row: TransferRow, changes: TransferChanges, expected: Expected, tx?: TransactionsTx): Promise<TransferRow | undefined> {
    const ends = changes.status !== undefined && AT_AN_END.has(changes.status);
    return row.kind === "reversal" && ends ? this.settleReversal(row, changes, expected, tx) : this.change(row.id, changes, expected, tx);
  }

  /**
   * Settles a reversal that reached its end, together with the transfer it reverses: the amount it
   * set aside is released, and counted as reversed when it posted; the original is marked reversed,
   * with its event, once posted reversals undo all of it.
   */
  private async settleReversal(reversal: TransferRow, changes: TransferChanges, expected: Expected, within?: TransactionsTx): Promise<TransferRow | undefined> {
    const settle = async (tx: TransactionsTx) => {
      const row = await this.change(reversal.id, changes, expected, tx);
      if (!row || !row.reversesTransferId) return row;
      const [original] = await tx.select().from(transfers).where(eq(transfers.id, row.reversesTransferId)).for("update");
      const reversedAmount = original.reversedAmount + (row.status === "posted" ? row.amount : 0n);
      const complete = row.status === "posted" && reversedAmount >= postedAmount(original);
      const [updated] = await tx
        .update(transfers)
        .set({ reversedAmount, reversalReserved: original.reversalReserved - row.amount, ...(complete ? { status: "reversed" as const } : {}), updatedAt: new Date() })
        .where(eq(transfers.id, original.id))
        .returning();
      if (complete) await this.announce(tx, updated, row);
      return row;
    };
    if (within) return settle(within);
    const saved = await this.db.transaction(settle);
    this.afterCommit();
    return saved;
  }

  /** Writes the event of the transfer's current status. */
  async announce(tx: TransactionsTx, row: TransferRow, reversal?: TransferRow): Promise<void> {
    await appendEvents(tx, this.outbox, eventsOf(row, reversal));
  }

  /** Claims a transfer to drive it, unless another driver holds an unexpired claim. */
  async claim(id: string, leaseMs: number): Promise<TransferRow | undefined> {
    const now = new Date();
    const [row] = await this.db
      .update(transfers)
      .set({ leaseUntil: new Date(now.getTime() + leaseMs) })
      .where(and(eq(transfers.id, id), sql`step <> 'done'`, or(isNull(transfers.leaseUntil), lt(transfers.leaseUntil, now))))
      .returning();
    return row;
  }

  /** Marks a transfer as just tried, so the recovery loop takes the ones waiting longest first. */
  async touch(id: string): Promise<void> {
    await this.db.update(transfers).set({ updatedAt: new Date() }).where(eq(transfers.id, id));
  }

  /** Ends a driver's claim: only its own, so a driver that outlived its claim cannot end the next one's. */
  async release(id: string, claim: Date | null): Promise<void> {
    if (!claim) return;
    await this.db.update(transfers).set({ leaseUntil: null }).where(and(eq(transfers.id, id), eq(transfers.leaseUntil, claim)));
  }

  /** Transfers left between steps for longer than `olderThanMs`, whose claim (if any) lapsed. */
  async stalled(olderThanMs: number, limit: number): Promise<string[]> {
    const now = new Date();
    const rows = await this.db
      .select({ id: transfers.id })
      .from(transfers)
      .where(
        and(
          sql`step <> 'done'`,
          lte(transfers.updatedAt, new Date(now.getTime() - olderThanMs)),
          or(isNull(transfers.leaseUntil), lt(transfers.leaseUntil, now)),
        ),
      )
      .orderBy(transfers.updatedAt)
      .limit(limit);
    return rows.map((r) => r.id);
  }

  /** Transfers touching an account, newest first, filtered by status and creation time. */
  async list(
    accountIdInput: string,
    statuses: TransferStatusName[],
    range: { start?: Date; end?: Date },
    size: number,
    token: string,
  ): Promise<Page<TransferRow>> {
    const accountId = requireId(accountIdInput, "account_id");
    const limit = pageSize(size);
    const cursor = decodePageToken(token, ["before"]);
    const before = cursor ? cursorId(cursor.before) : undefined;
    const rows = await this.db
      .select()
      .from(transfers)
      .where(
        and(
          or(eq(transfers.fromAccountId, accountId), eq(transfers.toAccountId, accountId)),
          statuses.length > 0 ? inArray(transfers.status, statuses) : undefined,
          range.start ? gte(transfers.createdAt, range.start) : undefined,
          range.end ? lt(transfers.createdAt, range.end) : undefined,
          // The cursor's own row gives its exact (microsecond) creation time.
          before ? sql`(${transfers.createdAt}, ${transfers.id}) < (select created_at, id from ${transfers} where id = ${before}::uuid)` : undefined,
        ),
      )
      .orderBy(desc(transfers.createdAt), desc(transfers.id))
      .limit(limit + 1);
    return pageOf(rows, limit, (last) => ({ before: last.id }));
  }
}

export type NewTransfer = typeof transfers.$inferInsert;

/** A transfer id already taken by another transfer. */
export const takenId = (id: string) => new DomainError(ErrorReason.EXISTS_WITH_DIFFERENT_FIELDS, `transfer ${id} already exists`, "transfer_id");

/** What a change expects of the row (what is left out is not checked). */
/** Where a movement ends: a reversal that gets there settles what it set aside of the transfer it reverses. */
const AT_AN_END = new Set<TransferStatusName>(["posted", "failed", "declined", "voided", "expired"]);

type Expected = { status?: TransferStatusName; step?: TransferRow["step"]; finalizeLedgerId?: string; leaseUntil?: Date };

interface Change {
  id: string;
  changes: TransferChanges;
  expected?: Expected;
  /** The trace of the request making the change. */
  context?: Context;
}

// One group of changes at a time; the changes that arrive meanwhile share the next transaction.
const CHANGE_GROUPS: GroupCommitOptions = { concurrency: 1, maxItems: 1000, onePerKey: true, name: "save transfers", tieBy: "event" };

/**
 * Applies changes to transfers, each while its `expected` holds, in one statement per set of
 * columns changed (UPDATE … FROM VALUES); returns the rows as changed, in order, or undefined
 * where the expectation did not hold. At most one change per transfer.
 */
async function updateMany(t: TransactionsDb | TransactionsTx, changes: Change[]): Promise<(TransferRow | undefined)[]> {
  const byShape = new Map<string, Change[]>();
  for (const change of changes) {
    const shape = shapeOf(change.changes);
    const group = byShape.get(shape);
    if (group) group.push(change);
    else byShape.set(shape, [change]);
  }
  const changed = new Map<string, TransferRow>();
  for (const [shape, group] of byShape) {
    for (const row of await updateShape(t, shape ? (shape.split(",") as ChangedColumn[]) : [], group)) changed.set(row.id, row);
  }
  return changes.map((c) => changed.get(c.id));
}

/** The columns a change sets, as one key; a column set to undefined is left as it is, as drizzle's set() does. */
const shapeOf = (changes: TransferChanges): string =>
  Object.entries(changes)
    .flatMap(([k, v]) => (v === undefined ? [] : [k]))
    .sort()
    .join(",");

type ChangedColumn = keyof TransferChanges;

/** One UPDATE for changes that set the same columns: each row's values, and what it expects, come from a recordset. */
function updateShape(t: TransactionsDb | TransactionsTx, columns: ChangedColumn[], changes: Change[]): Promise<TransferRow[]> {
  const fields = {
    id: transfers.id,
    expected_status: transfers.status,
    expected_step: transfers.step,
    expected_finalize: transfers.finalizeLedgerId,
    expected_lease: transfers.leaseUntil,
    ...Object.fromEntries(columns.map((k) => [`set_${k}`, transfers[k]])),
  };
  const rows = changes.map((c) => ({
    id: c.id,
    expected_status: c.expected?.status,
    expected_step: c.expected?.step,
    expected_finalize: c.expected?.finalizeLedgerId,
    expected_lease: c.expected?.leaseUntil,
    ...Object.fromEntries(columns.map((k) => [`set_${k}`, c.changes[k]])),
  }));
  return t
    .update(transfers)
    .set({ ...Object.fromEntries(columns.map((k) => [k, sql.raw(`v."set_${k}"`)])), updatedAt: new Date() })
    .from(recordset(fields, rows, "v"))
    .where(
      and(
        sql`${transfers.id} = v.id`,
        sql`(v.expected_status is null or ${transfers.status} = v.expected_status)`,
        sql`(v.expected_step is null or ${transfers.step} = v.expected_step)`,
        sql`(v.expected_finalize is null or ${transfers.finalizeLedgerId} = v.expected_finalize)`,
        sql`(v.expected_lease is null or ${transfers.leaseUntil} = v.expected_lease)`,
      ),
    )
    .returning();
}

/** The event of a transfer's current status, if that status has one. */
function eventsOf(row: TransferRow, reversal?: TransferRow, traceContext?: Context): NewEvent[] {
  const payload = eventFor(row.status, transferMessage(row), reversal ? transferMessage(reversal) : undefined);
  return payload ? [{ subjectId: row.id, payload, context: traceContext }] : [];
}

/** The rows of `ids` that exist, in the order of `ids`. */
const inOrder = (ids: string[], rows: TransferRow[]): TransferRow[] => ids.map((id) => rows.find((r) => r.id === id)).filter((r): r is TransferRow => r !== undefined);

/** What a transfer moved: an authorization moved what was captured. */
export const postedAmount = (row: TransferRow): bigint => (row.kind === "authorization" ? row.capturedAmount : row.amount);

