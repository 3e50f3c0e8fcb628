import { defineConfig } from "drizzle-kit";

// `npm run db:generate -w account` style: drizzle-kit diffs schema.ts against the migrations folder.
export default defineConfig({
  dialect: "postgresql",
  schema: "./services/account/src/db/schema.ts",
  out: "./services/account/migrations",
  schemaFilter: ["account"],
});
