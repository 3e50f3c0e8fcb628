import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import type { Logger } from "../logger";

export interface MigrateOptions {
  url: string;
  /** The service's own PostgreSQL schema; its migration journal lives there too. */
  schema: string;
  migrationsFolder: string;
  log: Logger;
}

/**
 * Applies a service's pending migrations. Replicas that start together queue
 * on a session advisory lock keyed by the schema, so each migration runs once.
 */
export async function migrateSchema(options: MigrateOptions): Promise<void> {
  const sql = postgres(options.url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    const lockKey = `tally.migrate.${options.schema}`;
    await sql`select pg_advisory_lock(hashtext(${lockKey}))`;
    try {
      await migrate(drizzle(sql), {
        migrationsFolder: options.migrationsFolder,
        migrationsSchema: options.schema,
        migrationsTable: "__migrations",
      });
    } finally {
      await sql`select pg_advisory_unlock(hashtext(${lockKey}))`;
    }
    options.log.info({ schema: options.schema }, "migrations applied");
  } finally {
    await sql.end({ timeout: 5 });
  }
}
