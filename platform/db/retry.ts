/**
 * PostgreSQL errors after which the whole transaction may simply run again:
 * a serialization failure, a deadlock, or a unique violation raced by a
 * concurrent writer of the same key (the re-run then sees the winner's row).
 */
const RETRYABLE = new Set(["40001", "40P01", "23505"]);

import { databaseErrorCode } from "./errors";

export async function withTransactionRetry<T>(run: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (err) {
      const code = databaseErrorCode(err);
      if (attempt >= attempts || !code || !RETRYABLE.has(code)) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
    }
  }
}
