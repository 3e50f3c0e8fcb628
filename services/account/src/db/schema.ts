import { sql } from "drizzle-orm";
import { bigint, check, index, integer, jsonb, pgSchema, text, timestamp, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import { outboxTable } from "../../../../platform/outbox/table";

/** The account service owns this schema; no other service reads it. */
export const accountSchema = pgSchema("account");

const money = (name: string) => bigint(name, { mode: "bigint" }).notNull().default(sql`0`);
const createdAt = () => timestamp("created_at", { withTimezone: true }).notNull().defaultNow();

export const accounts = accountSchema.table(
  "accounts",
  {
    id: uuid("id").primaryKey(),
    // Empty for system accounts.
    customerId: text("customer_id").notNull(),
    currency: text("currency").notNull(),
    kind: text("kind", { enum: ["customer", "settlement"] }).notNull(),
    status: text("status", { enum: ["active", "frozen", "closed"] }).notNull().default("active"),
    statusReason: text("status_reason").notNull().default(""),
    overdraftLimit: money("overdraft_limit"),
    metadata: jsonb("metadata").$type<Record<string, string>>().notNull().default(sql`'{}'::jsonb`),
    debitsPosted: money("debits_posted"),
    creditsPosted: money("credits_posted"),
    debitsPending: money("debits_pending"),
    creditsPending: money("credits_pending"),
    version: bigint("version", { mode: "bigint" }).notNull().default(sql`1`),
    // The idempotency key of CreateAccount; null for system accounts.
    requestId: text("request_id").unique(),
    createdAt: createdAt(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index("accounts_customer_idx").on(t.customerId, t.id),
    uniqueIndex("accounts_system_kind_currency_idx").on(t.kind, t.currency).where(sql`kind <> 'customer'`),
    check("accounts_balances_non_negative", sql`debits_posted >= 0 and credits_posted >= 0 and debits_pending >= 0 and credits_pending >= 0`),
    check("accounts_overdraft_limit_non_negative", sql`overdraft_limit >= 0`),
    // The ledger's first invariant, enforced by the database as a last line of defence.
    check(
      "accounts_customer_within_limit",
      sql`kind <> 'customer' or credits_posted - debits_posted - debits_pending >= -overdraft_limit`,
    ),
  ],
);

export const ledgerTransfers = accountSchema.table(
  "ledger_transfers",
  {
    id: uuid("id").primaryKey(),
    debitAccountId: uuid("debit_account_id").notNull().references(() => accounts.id),
    creditAccountId: uuid("credit_account_id").notNull().references(() => accounts.id),
    amount: bigint("amount", { mode: "bigint" }).notNull(),
    currency: text("currency").notNull(),
    mode: text("mode", { enum: ["post", "pending", "post_pending", "void_pending"] }).notNull(),
    // For post_pending and void_pending: the hold they finalize (at most one each, see the unique index).
    pendingId: uuid("pending_id"),
    timeoutSeconds: bigint("timeout_seconds", { mode: "bigint" }).notNull().default(sql`0`),
    state: text("state", {
      enum: ["posted", "pending", "pending_posted", "pending_voided", "pending_expired", "voided"],
    }).notNull(),
    // For pending transfers once finalized: how much was posted from the hold.
    postedAmount: bigint("posted_amount", { mode: "bigint" }).notNull().default(sql`0`),
    metadata: jsonb("metadata").$type<Record<string, string>>().notNull().default(sql`'{}'::jsonb`),
    createdAt: createdAt(),
    expiresAt: timestamp("expires_at", { withTimezone: true }),
  },
  (t) => [
    uniqueIndex("ledger_transfers_pending_id_idx").on(t.pendingId).where(sql`pending_id is not null`),
    index("ledger_transfers_expiring_idx").on(t.expiresAt).where(sql`state = 'pending' and expires_at is not null`),
    check("ledger_transfers_amount_positive", sql`amount > 0`),
    check("ledger_transfers_accounts_differ", sql`debit_account_id <> credit_account_id`),
  ],
);

/**
 * Transfer ids the ledger refused for what it held at the time (funds, an account's standing, a
 * hold's state): the id is spent, so a copy of the request that arrives later — one queued on
 * another replica while its caller gave up and recorded the refusal — is refused the same way
 * instead of moving money for a transfer its caller has failed.
 */
export const ledgerRefusals = accountSchema.table("ledger_refusals", {
  id: uuid("id").primaryKey(),
  // The PostingResult the id was refused with.
  result: integer("result").notNull(),
  refusedAt: timestamp("refused_at", { withTimezone: true }).notNull().defaultNow(),
});

export const entries = accountSchema.table(
  "entries",
  {
    // Increasing in application order for each account: the statement's order.
    sequence: bigint("sequence", { mode: "bigint" }).primaryKey().generatedAlwaysAsIdentity(),
    accountId: uuid("account_id").notNull().references(() => accounts.id),
    transferId: uuid("transfer_id").notNull(),
    counterpartyAccountId: uuid("counterparty_account_id").notNull(),
    direction: text("direction", { enum: ["debit", "credit"] }).notNull(),
    layer: text("layer", { enum: ["posted", "pending"] }).notNull(),
    // What made the entry: a posting, a hold, a hold released by post or void, or a hold expiring.
    event: text("event", { enum: ["post", "hold", "release", "expire"] }).notNull(),
    amount: bigint("amount", { mode: "bigint" }).notNull(),
    currency: text("currency").notNull(),
    postedBalanceAfter: bigint("posted_balance_after", { mode: "bigint" }).notNull(),
    availableBalanceAfter: bigint("available_balance_after", { mode: "bigint" }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    index("entries_account_sequence_idx").on(t.accountId, t.sequence.desc()),
    // A transfer changes each balance of each account once: applying it twice is impossible.
    uniqueIndex("entries_applied_once_idx").on(t.transferId, t.accountId, t.layer, t.event),
    check("entries_amount_nonzero", sql`amount <> 0`),
  ],
);

export const outbox = outboxTable(accountSchema);

export const schema = { accounts, ledgerTransfers, ledgerRefusals, entries, outbox };

export type AccountRow = typeof accounts.$inferSelect;
export type LedgerTransferRow = typeof ledgerTransfers.$inferSelect;
export type EntryRow = typeof entries.$inferSelect;
