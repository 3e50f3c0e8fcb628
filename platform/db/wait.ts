import postgres from "postgres";
import { waitForDependency, withoutPassword } from "../dependency-wait";
import type { Logger } from "../logger";
import { rejectAfter } from "../deadline";
import { databaseErrorCode } from "./errors";

// Not reachable yet, as while a container or a restarted server comes up. Anything else (a wrong
// password, a database that does not exist) will not change by waiting, and is reported at once.
// Closed connections count too: a proxy in front of a server not yet up (Docker's, for one) accepts and then closes.
const TRANSIENT = new Set([
  ...["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ETIMEDOUT"],
  ...["CONNECT_TIMEOUT", "CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED"],
  // cannot_connect_now (starting up), admin_shutdown (a restart), too_many_connections.
  ...["57P03", "57P01", "53300"],
]);

/** Waits up to `timeoutMs` until PostgreSQL answers at `url`. */
export function waitForDatabase(url: string, log: Logger, timeoutMs: number): Promise<void> {
  // postgres.js reconnects by itself while a connection keeps closing, so each try is bounded here.
  const ping = async (remainingMs: number) => {
    const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5 });
    try {
      await rejectAfter(sql`select 1`, Math.min(remainingMs, 5000), () => Object.assign(new Error("no answer"), { code: "CONNECT_TIMEOUT" }));
    } finally {
      await sql.end({ timeout: 0 }).catch(() => {});
    }
  };
  return waitForDependency(ping, {
    what: `PostgreSQL at ${withoutPassword(url)}`,
    timeoutMs,
    log,
    transient: (err) => TRANSIENT.has(databaseErrorCode(err) ?? ""),
  });
}
