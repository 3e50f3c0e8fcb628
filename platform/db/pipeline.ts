import { databaseErrorCode } from "./errors";

/**
 * Waits for statements started together on one transaction's connection — pipelined: postgres.js
 * sends them in one write, PostgreSQL runs them in the order started and answers them in one read,
 * so they cost one round trip instead of one each — and fails with the first failure's cause:
 * those after a failed statement fail only because the transaction had aborted (25P02), and may
 * settle sooner. Only for statements that need nothing from one another's results.
 */
export async function pipelined(statements: Promise<unknown>[]): Promise<void> {
  const failures = (await Promise.allSettled(statements)).flatMap((s) => (s.status === "rejected" ? [s.reason as unknown] : []));
  if (failures.length > 0) throw failures.find((err) => databaseErrorCode(err) !== "25P02") ?? failures[0];
}
