import type { Logger } from "./logger";

export interface DependencyWait {
  /** What is awaited, as the log and the error name it: "PostgreSQL at …". */
  what: string;
  timeoutMs: number;
  log: Logger;
  /** Whether a failure may pass by waiting; any other is reported at once. All may, by default. */
  transient?: (err: unknown) => boolean;
}

/**
 * Tries `attempt` until it succeeds, backing off up to 2 s between tries, for
 * at most `timeoutMs`: a service may start before its database or broker
 * does (compose, Kubernetes, a reboot) instead of depending on start order.
 * Each attempt is told the time left, and must not take longer.
 */
export async function waitForDependency<T>(attempt: (remainingMs: number) => Promise<T>, options: DependencyWait): Promise<T> {
  const { what, timeoutMs, log, transient = () => true } = options;
  const started = Date.now();
  let delay = 100;
  let lastWarning = 0;
  for (;;) {
    try {
      const result = await attempt(Math.max(timeoutMs - (Date.now() - started), 1));
      if (lastWarning) log.info({ waitedMs: Date.now() - started }, `${what} answers`);
      return result;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (!transient(err)) throw new Error(`${what} refused the connection: ${message}`, { cause: err });
      if (Date.now() - started + delay > timeoutMs) throw new Error(`${what} did not answer within ${timeoutMs} ms: ${message}`, { cause: err });
      if (Date.now() - lastWarning >= 5000) {
        log.warn({ waitedMs: Date.now() - started, reason: message }, `waiting for ${what}`);
        lastWarning = Date.now();
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 2000);
    }
  }
}

/**
 * A server address without its secrets, fit for a log line or an error
 * message: a password, or a user name standing alone (a NATS token).
 * Addresses without a scheme ("host:4222") are shown as they are.
 */
export function withoutPassword(address: string): string {
  if (!address.includes("://")) return address.includes("@") ? `***@${address.slice(address.lastIndexOf("@") + 1)}` : address;
  try {
    const parsed = new URL(address);
    if (parsed.password) parsed.password = "***";
    else if (parsed.username) parsed.username = "***";
    return parsed.toString();
  } catch {
    return "(an unparsable address)";
  }
}
