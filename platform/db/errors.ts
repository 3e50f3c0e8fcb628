/**
 * The PostgreSQL or socket error code behind an error. drizzle wraps driver
 * errors (DrizzleQueryError), keeping the original as `cause`, so look down
 * the chain for the first code.
 */
export function databaseErrorCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}
