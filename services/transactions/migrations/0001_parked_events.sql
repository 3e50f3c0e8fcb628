ALTER TABLE "transactions"."outbox" ADD COLUMN "parked_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "transactions"."outbox" ADD COLUMN "park_reason" text;