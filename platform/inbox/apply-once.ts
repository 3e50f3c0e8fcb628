import { sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { insertRows } from "../db/recordset";
import { withTransactionRetry } from "../db/retry";
import type { InboxTable } from "./table";

export type InboxDatabase = PgDatabase<PgQueryResultHKT, Record<string, unknown>>;
/** The transaction a database's `transaction()` hands its callback, with that database's schema and driver types. */
export type TransactionOf<TDb extends InboxDatabase> = Parameters<Parameters<TDb["transaction"]>[0]>[0];
export type InboxTransaction = TransactionOf<InboxDatabase>;

export type ApplyOutcome<T> = { applied: true; result: T } | { applied: false };

/**
 * Applies an event's effect at most once per consumer: the event id goes into
 * the inbox in the same transaction as the effect. A redelivered event finds
 * its row and changes nothing; an effect that throws rolls its row back too,
 * so a later delivery applies it. Concurrent deliveries of one event queue on
 * the row's key: one applies, the others see it committed and skip.
 *
 * The whole transaction runs again after a serialization failure or a
 * deadlock, so the effect must only touch the database through `tx`.
 * `tx` has the type of the caller's own database's transactions.
 */
export async function applyOnce<T, TDb extends InboxDatabase = InboxDatabase>(
  db: TDb,
  table: InboxTable,
  consumer: string,
  eventId: string,
  effect: (tx: TransactionOf<TDb>) => Promise<T>,
): Promise<ApplyOutcome<T>> {
  const outcome = await applyOnceEach(db, table, consumer, [eventId], (tx) => effect(tx));
  return outcome.fresh.length === 1 ? { applied: true, result: outcome.result as T } : { applied: false };
}

/**
 * applyOnce for several events in one transaction: the inbox rows of all of them in one insert,
 * then one effect for those not applied before (`fresh`, in the order given). Each event id at
 * most once in a call.
 */
export async function applyOnceEach<T, TDb extends InboxDatabase = InboxDatabase>(
  db: TDb,
  table: InboxTable,
  consumer: string,
  eventIds: string[],
  effect: (tx: TransactionOf<TDb>, fresh: string[]) => Promise<T>,
): Promise<{ fresh: string[]; result: T | undefined }> {
  return withTransactionRetry(() =>
    db.transaction(async (tx) => {
      const recorded = await insertRows(tx, table, eventIds.map((eventId) => ({ consumer, eventId })), {
        onConflict: sql`(consumer, event_id) do nothing`,
        returning: true,
      });
      // PostgreSQL gives uuids back in lower case, whatever case they came in.
      const inserted = new Set(recorded.map((r) => r.eventId));
      const fresh = eventIds.filter((id) => inserted.has(id.toLowerCase()));
      if (fresh.length === 0) return { fresh, result: undefined };
      // The transaction of `db` itself, typed by the constraint here.
      return { fresh, result: await effect(tx as TransactionOf<TDb>, fresh) };
    }),
  );
}
