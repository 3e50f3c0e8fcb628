import postgres from "postgres";
import { waitForDependency, withoutPassword } from "../dependency-wait";
import type { Logger } from "../logger";
import { databaseErrorCode } from "./errors";

// Not reachable yet, as while a container or a restarted server comes up. Anything else (a wrong
// password, a database that does not exist) will not change by waiting, and is reported at once.
const TRANSIENT = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ETIMEDOUT", "CONNECT_TIMEOUT", "57P03"]);

/** Waits up to `timeoutMs` until PostgreSQL answers at `url`. */
export function waitForDatabase(url: string, log: Logger, timeoutMs: number): Promise<void> {
  const ping = async () => {
    const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5 });
    try {
      await sql`select 1`;
    } finally {
      await sql.end({ timeout: 1 }).catch(() => {});
    }
  };
  return waitForDependency(ping, {
    what: `PostgreSQL at ${withoutPassword(url)}`,
    timeoutMs,
    log,
    transient: (err) => TRANSIENT.has(databaseErrorCode(err) ?? ""),
  });
}
