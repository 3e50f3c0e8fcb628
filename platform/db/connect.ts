import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import type { Logger } from "../logger";
import { databaseTarget, tracedSql } from "./tracing";

export interface Database<TSchema extends Record<string, unknown>> {
  /** postgres.js, for the few statements drizzle does not express (bulk updates, locks). */
  sql: postgres.Sql;
  db: PostgresJsDatabase<TSchema>;
  close(): Promise<void>;
}

export interface ConnectOptions {
  url: string;
  poolSize: number;
  log: Logger;
  /** Name seen in pg_stat_activity. */
  applicationName: string;
  /** Seconds an idle connection is kept (60); 0 keeps it until closed. */
  idleTimeoutSeconds?: number;
  /** Called when a connection closes, however it closes. */
  onClose?: () => void;
}

/** A pool to PostgreSQL through postgres.js, with drizzle on top and a span per query. bigint columns come back as bigint. */
export function connectDatabase<TSchema extends Record<string, unknown>>(
  options: ConnectOptions,
  schema: TSchema,
): Database<TSchema> {
  const pool = postgres(options.url, {
    max: options.poolSize,
    types: { bigint: postgres.BigInt },
    connection: { application_name: options.applicationName },
    onnotice: () => {},
    idle_timeout: options.idleTimeoutSeconds ?? 60,
    onclose: options.onClose,
    connect_timeout: 10,
  });
  const sql = tracedSql(pool, databaseTarget(options.url));
  const db = drizzle(sql, { schema });
  return {
    sql,
    db,
    close: () => sql.end({ timeout: 5 }),
  };
}
