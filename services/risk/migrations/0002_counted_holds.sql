CREATE TABLE "risk"."counted_holds" (
	"transfer_id" uuid PRIMARY KEY NOT NULL,
	"counted_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "counted_holds_counted_at_idx" ON "risk"."counted_holds" USING btree ("counted_at");