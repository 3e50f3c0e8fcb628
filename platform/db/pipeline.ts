import { databaseErrorCode } from "./errors";

/**
 * Waits for statements started together on one transaction's connection — pipelined: postgres.js
 * sends them in one write, PostgreSQL runs them in the order started and answers them in one read,
 * so they cost one round trip instead of one each — and fails with the first failure's cause:
 * those after a failed statement fail only because the transaction had aborted (25P02), and may
 * settle sooner. Only for statements that need nothing from one another's results; a statement
 * still sees what those before it did. Resolves with their results, in order.
 */
export async function pipelined<T extends readonly unknown[] | []>(statements: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const settled = await Promise.allSettled(statements);
  const failures = settled.flatMap((s) => (s.status === "rejected" ? [s.reason as unknown] : []));
  if (failures.length > 0) throw failures.find((err) => databaseErrorCode(err) !== "25P02") ?? failures[0];
  return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: Awaited<T[K]> };
}
