ALTER TABLE "risk"."outbox" ADD COLUMN "parked_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "risk"."outbox" ADD COLUMN "park_reason" text;