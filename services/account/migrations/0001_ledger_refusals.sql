CREATE TABLE "account"."ledger_refusals" (
	"id" uuid PRIMARY KEY NOT NULL,
	"result" integer NOT NULL,
	"refused_at" timestamp with time zone DEFAULT now() NOT NULL
);
