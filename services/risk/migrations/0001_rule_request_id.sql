ALTER TABLE "risk"."rules" ADD COLUMN "request_id" text;--> statement-breakpoint
CREATE UNIQUE INDEX "rules_request_idx" ON "risk"."rules" USING btree ("request_id") WHERE request_id is not null;