import type { JsonValue } from "@bufbuild/protobuf";
import { sql } from "drizzle-orm";
import { bigint, index, jsonb, pgSchema, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { inboxTable } from "../../../../platform/inbox/table";
import { outboxTable } from "../../../../platform/outbox/table";

/** The transactions service owns this schema; no other service reads it. */
export const transactionsSchema = pgSchema("transactions");

const at = (name: string) => timestamp(name, { withTimezone: true });
const money = (name: string) => bigint(name, { mode: "bigint" }).notNull().default(sql`0`);

export const STATUSES = ["created", "held", "posted", "declined", "failed", "voided", "expired", "reversed"] as const;
export const KINDS = ["transfer", "deposit", "withdrawal", "authorization", "reversal"] as const;
/** What the orchestrator does next; "done" once the transfer rests in a state only a person or an event moves it from. */
export const STEPS = ["assess", "post", "hold", "capture", "void", "done"] as const;

export const transfers = transactionsSchema.table(
  "transfers",
  {
    id: uuid("id").primaryKey(),
    requestId: text("request_id").notNull(),
    kind: text("kind", { enum: KINDS }).notNull(),
    status: text("status", { enum: STATUSES }).notNull(),
    step: text("step", { enum: STEPS }).notNull(),
    fromAccountId: uuid("from_account_id").notNull(),
    toAccountId: uuid("to_account_id").notNull(),
    amount: bigint("amount", { mode: "bigint" }).notNull(),
    currency: text("currency").notNull(),
    capturedAmount: money("captured_amount"),
    // Undone by posted reversals; and set aside by reversals still on their way (so together they never exceed the transfer).
    reversedAmount: money("reversed_amount"),
    reversalReserved: money("reversal_reserved"),
    reversesTransferId: uuid("reverses_transfer_id"),
    holdExpiresAt: at("hold_expires_at"),
    // Seconds the ledger hold lasts (authorizations, and transfers held for review).
    holdSeconds: bigint("hold_seconds", { mode: "bigint" }).notNull().default(sql`0`),
    // The ledger transfer that finalizes the hold (capture or void), chosen before it is posted so a re-drive reuses it.
    finalizeLedgerId: uuid("finalize_ledger_id"),
    // For captures: the amount to post from the hold.
    captureAmount: money("capture_amount"),
    description: text("description").notNull().default(""),
    metadata: jsonb("metadata").$type<Record<string, string>>().notNull().default(sql`'{}'::jsonb`),
    // The RiskOutcome in proto3 JSON, once risk (or the fallback policy) has decided.
    risk: jsonb("risk"),
    failureReason: text("failure_reason").notNull().default(""),
    failureMessage: text("failure_message").notNull().default(""),
    // A driver claims the transfer until this time; the recovery loop takes over transfers whose claim lapsed.
    leaseUntil: at("lease_until"),
    createdAt: at("created_at").notNull().defaultNow(),
    updatedAt: at("updated_at").notNull().defaultNow(),
    postedAt: at("posted_at"),
  },
  (t) => [
    index("transfers_from_idx").on(t.fromAccountId, t.createdAt, t.id),
    index("transfers_to_idx").on(t.toAccountId, t.createdAt, t.id),
    index("transfers_pending_step_idx").on(t.updatedAt).where(sql`step <> 'done'`),
    index("transfers_reverses_idx").on(t.reversesTransferId),
  ],
);

/** Idempotency keys: a request id, the fingerprint of the body it came with, and its outcome. */
export const idempotencyKeys = transactionsSchema.table(
  "idempotency_keys",
  {
    requestId: text("request_id").primaryKey(),
    operation: text("operation").notNull(),
    // sha256 of the request without its request id.
    requestHash: text("request_hash").notNull(),
    outcome: jsonb("outcome").$type<StoredOutcome>().notNull(),
    createdAt: at("created_at").notNull().defaultNow(),
    expiresAt: at("expires_at").notNull(),
  },
  (t) => [index("idempotency_keys_expires_idx").on(t.expiresAt)],
);

/** The transfers a request created, and the answer it gave (proto3 JSON), once it has given it. */
export type StoredOutcome = { transferIds: string[]; answer?: JsonValue[] };

export const inbox = inboxTable(transactionsSchema);
export const outbox = outboxTable(transactionsSchema);

export const schema = { transfers, idempotencyKeys, inbox, outbox };

export type TransferRow = typeof transfers.$inferSelect;
export type TransferStatusName = TransferRow["status"];
export type TransferKindName = TransferRow["kind"];
export type StepName = TransferRow["step"];
