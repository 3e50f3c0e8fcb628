CREATE SCHEMA IF NOT EXISTS "risk";
--> statement-breakpoint
CREATE TABLE "risk"."accounts" (
	"id" uuid PRIMARY KEY NOT NULL,
	"customer_id" text NOT NULL,
	"currency" text NOT NULL,
	"kind" text NOT NULL,
	"status" text NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"opened_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"version" bigint DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "risk"."activity" (
	"account_id" uuid NOT NULL,
	"bucket" timestamp with time zone NOT NULL,
	"debit_count" bigint DEFAULT 0 NOT NULL,
	"debit_sum" bigint DEFAULT 0 NOT NULL,
	"credit_count" bigint DEFAULT 0 NOT NULL,
	"credit_sum" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "activity_account_id_bucket_pk" PRIMARY KEY("account_id","bucket")
);
--> statement-breakpoint
CREATE TABLE "risk"."alerts" (
	"id" uuid PRIMARY KEY NOT NULL,
	"rule_id" uuid NOT NULL,
	"rule_version" integer NOT NULL,
	"account_id" uuid NOT NULL,
	"severity" text NOT NULL,
	"message" text NOT NULL,
	"event_id" uuid NOT NULL,
	"transfer_id" uuid NOT NULL,
	"minute" timestamp with time zone NOT NULL,
	"account_frozen" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "alerts_once_idx" UNIQUE("rule_id","account_id","minute")
);
--> statement-breakpoint
CREATE TABLE "risk"."assessments" (
	"id" uuid PRIMARY KEY NOT NULL,
	"transfer_id" uuid NOT NULL,
	"decision" text NOT NULL,
	"score" integer NOT NULL,
	"hits" jsonb NOT NULL,
	"transfer" jsonb NOT NULL,
	"duration_micros" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "assessments_transfer_id_unique" UNIQUE("transfer_id")
);
--> statement-breakpoint
CREATE TABLE "risk"."counterparties" (
	"account_id" uuid NOT NULL,
	"counterparty_id" uuid NOT NULL,
	"last_seen_at" timestamp with time zone NOT NULL,
	CONSTRAINT "counterparties_account_id_counterparty_id_pk" PRIMARY KEY("account_id","counterparty_id")
);
--> statement-breakpoint
CREATE TABLE "risk"."inbox" (
	"consumer" text NOT NULL,
	"event_id" uuid NOT NULL,
	"applied_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "inbox_consumer_event_id_pk" PRIMARY KEY("consumer","event_id")
);
--> statement-breakpoint
CREATE TABLE "risk"."outbox" (
	"seq" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "risk"."outbox_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"id" uuid NOT NULL,
	"subject" text NOT NULL,
	"payload" "bytea" NOT NULL,
	"headers" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"published_at" timestamp with time zone,
	CONSTRAINT "outbox_id_unique" UNIQUE("id")
);
--> statement-breakpoint
CREATE TABLE "risk"."profiles" (
	"account_id" uuid PRIMARY KEY NOT NULL,
	"currency" text NOT NULL,
	"first_activity_at" timestamp with time zone NOT NULL,
	"last_activity_at" timestamp with time zone NOT NULL,
	"debit_count" bigint DEFAULT 0 NOT NULL,
	"debit_sum" bigint DEFAULT 0 NOT NULL,
	"credit_count" bigint DEFAULT 0 NOT NULL,
	"credit_sum" bigint DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "risk"."reviews" (
	"id" uuid PRIMARY KEY NOT NULL,
	"transfer_id" uuid NOT NULL,
	"assessment_id" uuid NOT NULL,
	"account_id" uuid NOT NULL,
	"status" text NOT NULL,
	"hits" jsonb NOT NULL,
	"transfer" jsonb NOT NULL,
	"note" text DEFAULT '' NOT NULL,
	"resolved_by" text DEFAULT '' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"resolved_at" timestamp with time zone,
	CONSTRAINT "reviews_transfer_id_unique" UNIQUE("transfer_id")
);
--> statement-breakpoint
CREATE TABLE "risk"."rules" (
	"id" uuid NOT NULL,
	"version" integer NOT NULL,
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"kind" text NOT NULL,
	"expression" text NOT NULL,
	"action" text NOT NULL,
	"score" integer DEFAULT 0 NOT NULL,
	"priority" integer DEFAULT 0 NOT NULL,
	"enabled" boolean NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "rules_id_version_pk" PRIMARY KEY("id","version")
);
--> statement-breakpoint
CREATE INDEX "activity_bucket_idx" ON "risk"."activity" USING btree ("bucket");--> statement-breakpoint
CREATE INDEX "alerts_account_idx" ON "risk"."alerts" USING btree ("account_id","id");--> statement-breakpoint
CREATE INDEX "counterparties_last_seen_idx" ON "risk"."counterparties" USING btree ("last_seen_at");--> statement-breakpoint
CREATE INDEX "inbox_applied_at_idx" ON "risk"."inbox" USING btree ("applied_at");--> statement-breakpoint
CREATE INDEX "outbox_unpublished_idx" ON "risk"."outbox" USING btree ("seq") WHERE published_at is null;--> statement-breakpoint
CREATE INDEX "outbox_published_at_idx" ON "risk"."outbox" USING btree ("published_at");--> statement-breakpoint
CREATE INDEX "reviews_status_idx" ON "risk"."reviews" USING btree ("status","id");--> statement-breakpoint
CREATE INDEX "reviews_account_idx" ON "risk"."reviews" USING btree ("account_id","id");