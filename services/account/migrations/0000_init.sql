CREATE SCHEMA IF NOT EXISTS "account";
--> statement-breakpoint
CREATE TABLE "account"."accounts" (
	"id" uuid PRIMARY KEY NOT NULL,
	"customer_id" text NOT NULL,
	"currency" text NOT NULL,
	"kind" text NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"status_reason" text DEFAULT '' NOT NULL,
	"overdraft_limit" bigint DEFAULT 0 NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"debits_posted" bigint DEFAULT 0 NOT NULL,
	"credits_posted" bigint DEFAULT 0 NOT NULL,
	"debits_pending" bigint DEFAULT 0 NOT NULL,
	"credits_pending" bigint DEFAULT 0 NOT NULL,
	"version" bigint DEFAULT 1 NOT NULL,
	"request_id" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "accounts_request_id_unique" UNIQUE("request_id"),
	CONSTRAINT "accounts_balances_non_negative" CHECK (debits_posted >= 0 and credits_posted >= 0 and debits_pending >= 0 and credits_pending >= 0),
	CONSTRAINT "accounts_overdraft_limit_non_negative" CHECK (overdraft_limit >= 0),
	CONSTRAINT "accounts_customer_within_limit" CHECK (kind <> 'customer' or credits_posted - debits_posted - debits_pending >= -overdraft_limit)
);
--> statement-breakpoint
CREATE TABLE "account"."entries" (
	"sequence" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "account"."entries_sequence_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"account_id" uuid NOT NULL,
	"transfer_id" uuid NOT NULL,
	"counterparty_account_id" uuid NOT NULL,
	"direction" text NOT NULL,
	"layer" text NOT NULL,
	"event" text NOT NULL,
	"amount" bigint NOT NULL,
	"currency" text NOT NULL,
	"posted_balance_after" bigint NOT NULL,
	"available_balance_after" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "entries_amount_nonzero" CHECK (amount <> 0)
);
--> statement-breakpoint
CREATE TABLE "account"."ledger_transfers" (
	"id" uuid PRIMARY KEY NOT NULL,
	"debit_account_id" uuid NOT NULL,
	"credit_account_id" uuid NOT NULL,
	"amount" bigint NOT NULL,
	"currency" text NOT NULL,
	"mode" text NOT NULL,
	"pending_id" uuid,
	"timeout_seconds" bigint DEFAULT 0 NOT NULL,
	"state" text NOT NULL,
	"posted_amount" bigint DEFAULT 0 NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone,
	CONSTRAINT "ledger_transfers_amount_positive" CHECK (amount > 0),
	CONSTRAINT "ledger_transfers_accounts_differ" CHECK (debit_account_id <> credit_account_id)
);
--> statement-breakpoint
CREATE TABLE "account"."outbox" (
	"seq" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "account"."outbox_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"id" uuid NOT NULL,
	"subject" text NOT NULL,
	"payload" "bytea" NOT NULL,
	"headers" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"published_at" timestamp with time zone,
	CONSTRAINT "outbox_id_unique" UNIQUE("id")
);
--> statement-breakpoint
ALTER TABLE "account"."entries" ADD CONSTRAINT "entries_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "account"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "account"."ledger_transfers" ADD CONSTRAINT "ledger_transfers_debit_account_id_accounts_id_fk" FOREIGN KEY ("debit_account_id") REFERENCES "account"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "account"."ledger_transfers" ADD CONSTRAINT "ledger_transfers_credit_account_id_accounts_id_fk" FOREIGN KEY ("credit_account_id") REFERENCES "account"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "accounts_customer_idx" ON "account"."accounts" USING btree ("customer_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "accounts_system_kind_currency_idx" ON "account"."accounts" USING btree ("kind","currency") WHERE kind <> 'customer';--> statement-breakpoint
CREATE INDEX "entries_account_sequence_idx" ON "account"."entries" USING btree ("account_id","sequence" DESC NULLS LAST);--> statement-breakpoint
CREATE UNIQUE INDEX "entries_applied_once_idx" ON "account"."entries" USING btree ("transfer_id","account_id","layer","event");--> statement-breakpoint
CREATE UNIQUE INDEX "ledger_transfers_pending_id_idx" ON "account"."ledger_transfers" USING btree ("pending_id") WHERE pending_id is not null;--> statement-breakpoint
CREATE INDEX "ledger_transfers_expiring_idx" ON "account"."ledger_transfers" USING btree ("expires_at") WHERE state = 'pending' and expires_at is not null;--> statement-breakpoint
CREATE INDEX "outbox_unpublished_idx" ON "account"."outbox" USING btree ("seq") WHERE published_at is null;--> statement-breakpoint
CREATE INDEX "outbox_published_at_idx" ON "account"."outbox" USING btree ("published_at");