import { index, primaryKey, text, timestamp, uuid, type PgSchema } from "drizzle-orm/pg-core";

/**
 * The inbox of one service: the events each of its consumers has applied,
 * written in the same transaction as the event's effect, so a redelivered
 * event is recognised and skipped. Old rows may be pruned by applied_at once
 * they are past the stream's retention (a redelivery can no longer arrive).
 */
export function inboxTable(schema: PgSchema) {
  return schema.table(
    "inbox",
    {
      // The durable consumer that applied the event; each tracks its own events.
      consumer: text("consumer").notNull(),
      eventId: uuid("event_id").notNull(),
      appliedAt: timestamp("applied_at", { withTimezone: true }).notNull().defaultNow(),
    },
    (t) => [primaryKey({ columns: [t.consumer, t.eventId] }), index("inbox_applied_at_idx").on(t.appliedAt)],
  );
}

export type InboxTable = ReturnType<typeof inboxTable>;
