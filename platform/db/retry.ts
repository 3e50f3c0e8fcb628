import { databaseErrorCode, databaseErrorRoutine } from "./errors";

/**
 * PostgreSQL errors after which the whole transaction may simply run again:
 * a serialization failure, a deadlock, or a unique violation raced by a
 * concurrent writer of the same key (the re-run then sees the winner's row).
 */
const RETRYABLE = new Set(["40001", "40P01", "23505"]);

/**
 * A prepared statement that no longer fits its table (a column's type changed by a migration
 * while this replica runs). postgres.js drops it and prepares it anew, but within a transaction
 * only the next attempt can.
 */
const STALE_STATEMENT = new Set(["RevalidateCachedQuery", "FetchPreparedStatement", "transformAssignedExpr"]);

const retryable = (err: unknown): boolean => {
  const code = databaseErrorCode(err);
  return (code !== undefined && RETRYABLE.has(code)) || STALE_STATEMENT.has(databaseErrorRoutine(err) ?? "");
};

/**
 * Thrown inside a transaction that found its reads raced by a concurrent writer in a way
 * PostgreSQL did not catch (read committed): withTransactionRetry runs it again, as after a
 * serialization failure.
 */
export class TransactionRaced extends Error {
  readonly code = "40001";
}

export async function withTransactionRetry<T>(run: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (err) {
      if (attempt >= attempts || !retryable(err)) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
    }
  }
}
