CREATE SCHEMA IF NOT EXISTS "transactions";
--> statement-breakpoint
CREATE TABLE "transactions"."idempotency_keys" (
	"request_id" text PRIMARY KEY NOT NULL,
	"operation" text NOT NULL,
	"request_hash" text NOT NULL,
	"outcome" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "transactions"."inbox" (
	"consumer" text NOT NULL,
	"event_id" uuid NOT NULL,
	"applied_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "inbox_consumer_event_id_pk" PRIMARY KEY("consumer","event_id")
);
--> statement-breakpoint
CREATE TABLE "transactions"."outbox" (
	"seq" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "transactions"."outbox_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"id" uuid NOT NULL,
	"subject" text NOT NULL,
	"payload" "bytea" NOT NULL,
	"headers" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"published_at" timestamp with time zone,
	CONSTRAINT "outbox_id_unique" UNIQUE("id")
);
--> statement-breakpoint
CREATE TABLE "transactions"."transfers" (
	"id" uuid PRIMARY KEY NOT NULL,
	"request_id" text NOT NULL,
	"kind" text NOT NULL,
	"status" text NOT NULL,
	"step" text NOT NULL,
	"from_account_id" uuid NOT NULL,
	"to_account_id" uuid NOT NULL,
	"amount" bigint NOT NULL,
	"currency" text NOT NULL,
	"captured_amount" bigint DEFAULT 0 NOT NULL,
	"reversed_amount" bigint DEFAULT 0 NOT NULL,
	"reversal_reserved" bigint DEFAULT 0 NOT NULL,
	"reverses_transfer_id" uuid,
	"hold_expires_at" timestamp with time zone,
	"hold_seconds" bigint DEFAULT 0 NOT NULL,
	"finalize_ledger_id" uuid,
	"capture_amount" bigint DEFAULT 0 NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"risk" jsonb,
	"failure_reason" text DEFAULT '' NOT NULL,
	"failure_message" text DEFAULT '' NOT NULL,
	"lease_until" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"posted_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "idempotency_keys_expires_idx" ON "transactions"."idempotency_keys" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "inbox_applied_at_idx" ON "transactions"."inbox" USING btree ("applied_at");--> statement-breakpoint
CREATE INDEX "outbox_unpublished_idx" ON "transactions"."outbox" USING btree ("seq") WHERE published_at is null;--> statement-breakpoint
CREATE INDEX "outbox_published_at_idx" ON "transactions"."outbox" USING btree ("published_at");--> statement-breakpoint
CREATE INDEX "transfers_from_idx" ON "transactions"."transfers" USING btree ("from_account_id","created_at","id");--> statement-breakpoint
CREATE INDEX "transfers_to_idx" ON "transactions"."transfers" USING btree ("to_account_id","created_at","id");--> statement-breakpoint
CREATE INDEX "transfers_pending_step_idx" ON "transactions"."transfers" USING btree ("updated_at") WHERE step <> 'done';--> statement-breakpoint
CREATE INDEX "transfers_reverses_idx" ON "transactions"."transfers" USING btree ("reverses_transfer_id");