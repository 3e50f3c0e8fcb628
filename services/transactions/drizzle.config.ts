import { defineConfig } from "drizzle-kit";

// npx drizzle-kit generate --config services/transactions/drizzle.config.ts
export default defineConfig({
  dialect: "postgresql",
  schema: "./services/transactions/src/db/schema.ts",
  out: "./services/transactions/migrations",
  schemaFilter: ["transactions"],
});
