/**
 * Fields of the PostgreSQL or socket error behind an error. drizzle wraps driver
 * errors (DrizzleQueryError), keeping the original as `cause`, so look down
 * the chain for the first that has the field.
 */
function errorField(err: unknown, field: "code" | "routine"): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const value = (e as Record<string, unknown>)[field];
    if (typeof value === "string") return value;
  }
  return undefined;
}

/** The SQLSTATE (or socket error code). */
export const databaseErrorCode = (err: unknown): string | undefined => errorField(err, "code");

/** The server function that raised it: tells apart errors that share a SQLSTATE. */
export const databaseErrorRoutine = (err: unknown): string | undefined => errorField(err, "routine");
