import { defineConfig } from "drizzle-kit";

// npx drizzle-kit generate --config services/risk/drizzle.config.ts
export default defineConfig({
  dialect: "postgresql",
  schema: "./services/risk/src/db/schema.ts",
  out: "./services/risk/migrations",
  schemaFilter: ["risk"],
});
