import { sql } from "drizzle-orm";
import { bigint, customType, index, jsonb, text, timestamp, uuid, type PgSchema } from "drizzle-orm/pg-core";

const bytea = customType<{ data: Uint8Array; driverData: Buffer }>({
  dataType: () => "bytea",
  toDriver: (value) => Buffer.from(value.buffer, value.byteOffset, value.byteLength),
});

/**
 * The transactional outbox of one service: event rows written in the same
 * transaction as the state change they describe, published later by the relay.
 */
export function outboxTable(schema: PgSchema) {
  return schema.table(
    "outbox",
    {
      // Publish order.
      seq: bigint("seq", { mode: "bigint" }).primaryKey().generatedAlwaysAsIdentity(),
      // The event id, sent as Nats-Msg-Id so the stream drops a republished copy.
      id: uuid("id").notNull().unique(),
      subject: text("subject").notNull(),
      payload: bytea("payload").notNull(),
      // W3C trace context of the transaction that wrote the event.
      headers: jsonb("headers").$type<Record<string, string>>().notNull().default(sql`'{}'::jsonb`),
      createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
      publishedAt: timestamp("published_at", { withTimezone: true }),
      // Set aside by the relay: the stream would not take this row, though it took the rows after
      // it. Kept, with why, for an operator to fix and send again (clearing parked_at).
      parkedAt: timestamp("parked_at", { withTimezone: true }),
      parkReason: text("park_reason"),
    },
    (t) => [
      index("outbox_unpublished_idx").on(t.seq).where(sql`published_at is null`),
      index("outbox_published_at_idx").on(t.publishedAt),
    ],
  );
}

export type OutboxTable = ReturnType<typeof outboxTable>;
