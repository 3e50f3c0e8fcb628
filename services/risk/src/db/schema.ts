import { sql } from "drizzle-orm";
import { bigint, boolean, index, integer, jsonb, pgSchema, primaryKey, text, timestamp, unique, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import { inboxTable } from "../../../../platform/inbox/table";
import { outboxTable } from "../../../../platform/outbox/table";

/** The risk service owns this schema; no other service reads it. */
export const riskSchema = pgSchema("risk");

const count = (name: string) => bigint(name, { mode: "bigint" }).notNull().default(sql`0`);
const at = (name: string) => timestamp(name, { withTimezone: true });

/** Every version of every rule: a change adds a version, nothing is overwritten. */
export const rules = riskSchema.table(
  "rules",
  {
    id: uuid("id").notNull(),
    version: integer("version").notNull(),
    name: text("name").notNull(),
    description: text("description").notNull().default(""),
    kind: text("kind", { enum: ["assessment", "monitoring"] }).notNull(),
    expression: text("expression").notNull(),
    action: text("action", { enum: ["decline", "review", "add_score", "alert", "freeze_account"] }).notNull(),
    score: integer("score").notNull().default(0),
    priority: integer("priority").notNull().default(0),
    enabled: boolean("enabled").notNull(),
    // The CreateRule request that created the rule (its first version only), when it named one.
    requestId: text("request_id"),
    createdAt: at("created_at").notNull(),
    updatedAt: at("updated_at").notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.id, t.version] }), uniqueIndex("rules_request_idx").on(t.requestId).where(sql`request_id is not null`)],
);

/** Risk's own view of accounts, learnt from the account service's events. */
export const accounts = riskSchema.table("accounts", {
  id: uuid("id").primaryKey(),
  customerId: text("customer_id").notNull(),
  currency: text("currency").notNull(),
  kind: text("kind").notNull(),
  status: text("status").notNull(),
  metadata: jsonb("metadata").$type<Record<string, string>>().notNull().default(sql`'{}'::jsonb`),
  openedAt: at("opened_at").notNull(),
  updatedAt: at("updated_at").notNull().defaultNow(),
  // The account's own version: an event older than what is stored changes nothing.
  version: bigint("version", { mode: "bigint" }).notNull().default(sql`0`),
});

/** Lifetime aggregates of an account's posted transfers. */
export const profiles = riskSchema.table("profiles", {
  accountId: uuid("account_id").primaryKey(),
  currency: text("currency").notNull(),
  firstActivityAt: at("first_activity_at").notNull(),
  lastActivityAt: at("last_activity_at").notNull(),
  debitCount: count("debit_count"),
  debitSum: count("debit_sum"),
  creditCount: count("credit_count"),
  creditSum: count("credit_sum"),
});

/**
 * Money asked to move, in 10-second buckets — transfers posted at once, and holds when they are
 * made (their capture is the same movement) — so sliding windows are sums over the recent buckets.
 */
export const activity = riskSchema.table(
  "activity",
  {
    accountId: uuid("account_id").notNull(),
    bucket: at("bucket").notNull(),
    debitCount: count("debit_count"),
    debitSum: count("debit_sum"),
    creditCount: count("credit_count"),
    creditSum: count("credit_sum"),
    // Transfers from the account that risk declined, counted by the assessments (the rest by the ledger's events).
    declinedCount: count("declined_count"),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.bucket] }), index("activity_bucket_idx").on(t.bucket)],
);

/** The holds counted in the windows already: each once, whichever of its events comes first. */
export const countedHolds = riskSchema.table(
  "counted_holds",
  {
    transferId: uuid("transfer_id").primaryKey(),
    countedAt: at("counted_at").notNull().defaultNow(),
  },
  (t) => [index("counted_holds_counted_at_idx").on(t.countedAt)],
);

/** Who an account dealt with, and when last. */
export const counterparties = riskSchema.table(
  "counterparties",
  {
    accountId: uuid("account_id").notNull(),
    counterpartyId: uuid("counterparty_id").notNull(),
    lastSeenAt: at("last_seen_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.counterpartyId] }), index("counterparties_last_seen_idx").on(t.lastSeenAt)],
);

/** Every decision, with the rules that fired, for audit. One per transfer. */
export const assessments = riskSchema.table("assessments", {
  id: uuid("id").primaryKey(),
  transferId: uuid("transfer_id").notNull().unique(),
  decision: text("decision", { enum: ["approve", "review", "decline"] }).notNull(),
  score: integer("score").notNull(),
  hits: jsonb("hits").$type<StoredHit[]>().notNull(),
  // The transfer as assessed, in proto3 JSON.
  transfer: jsonb("transfer").notNull(),
  durationMicros: bigint("duration_micros", { mode: "bigint" }).notNull(),
  createdAt: at("created_at").notNull().defaultNow(),
});

export const reviews = riskSchema.table(
  "reviews",
  {
    id: uuid("id").primaryKey(),
    transferId: uuid("transfer_id").notNull().unique(),
    assessmentId: uuid("assessment_id").notNull(),
    accountId: uuid("account_id").notNull(),
    status: text("status", { enum: ["open", "approved", "declined"] }).notNull(),
    hits: jsonb("hits").$type<StoredHit[]>().notNull(),
    transfer: jsonb("transfer").notNull(),
    note: text("note").notNull().default(""),
    resolvedBy: text("resolved_by").notNull().default(""),
    createdAt: at("created_at").notNull().defaultNow(),
    resolvedAt: at("resolved_at"),
  },
  (t) => [index("reviews_status_idx").on(t.status, t.id), index("reviews_account_idx").on(t.accountId, t.id)],
);

export const alerts = riskSchema.table(
  "alerts",
  {
    id: uuid("id").primaryKey(),
    ruleId: uuid("rule_id").notNull(),
    ruleVersion: integer("rule_version").notNull(),
    accountId: uuid("account_id").notNull(),
    severity: text("severity", { enum: ["low", "medium", "high"] }).notNull(),
    message: text("message").notNull(),
    eventId: uuid("event_id").notNull(),
    // The first transfer that raised it.
    transferId: uuid("transfer_id").notNull(),
    // The minute of that transfer: a rule raises one alert per account per minute, however often events are delivered.
    minute: at("minute").notNull(),
    accountFrozen: boolean("account_frozen").notNull().default(false),
    createdAt: at("created_at").notNull().defaultNow(),
  },
  (t) => [unique("alerts_once_idx").on(t.ruleId, t.accountId, t.minute), index("alerts_account_idx").on(t.accountId, t.id)],
);

export interface StoredHit {
  ruleId: string;
  ruleVersion: number;
  ruleName: string;
  action: (typeof rules.$inferSelect)["action"];
  score: number;
  /** Why the rule could not be evaluated: it did not fire (see RuleHit.error). */
  error?: string;
}

export const inbox = inboxTable(riskSchema);
export const outbox = outboxTable(riskSchema);

export const schema = { rules, accounts, profiles, activity, countedHolds, counterparties, assessments, reviews, alerts, inbox, outbox };

export type RuleRow = typeof rules.$inferSelect;
export type AccountViewRow = typeof accounts.$inferSelect;
export type ReviewRow = typeof reviews.$inferSelect;
export type AlertRow = typeof alerts.$inferSelect;
export type AssessmentRow = typeof assessments.$inferSelect;
