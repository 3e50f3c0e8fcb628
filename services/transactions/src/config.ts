import { z } from "zod";
import { int, localDefault, loadConfig, platformEnv, type Env } from "../../../platform/config";

/** The ledger's longest hold: it refuses any longer one. */
export const LONGEST_HOLD_SECONDS = 366 * 86_400;

/** Every variable the transactions service reads, with its type and default. */
export function transactionsEnv(env: Env = process.env) {
  return {
    ...platformEnv(env),
    GRPC_PORT: int(50052, 0, 65535),
    ACCOUNT_SERVICE_URL: localDefault("127.0.0.1:50051", env),
    RISK_SERVICE_URL: localDefault("127.0.0.1:50053", env),
    // How long a call to risk may take, for each 50 transfers it carries, before the fallback policy decides.
    RISK_DEADLINE_MS: int(250, 1),
    // When risk cannot answer: hold the funds until it can (default), decline, or approve up to a limit.
    RISK_FALLBACK: z.enum(["hold", "decline", "approve"]).default("hold"),
    // With RISK_FALLBACK=approve, larger amounts (minor units) are held instead: never approve blindly above it.
    RISK_FALLBACK_APPROVE_MAX: int(10_000, 0),
    // The breaker opens once this many risk calls were made and most recent ones failed; it tries again after the cool-down.
    RISK_BREAKER_FAILURES: int(5, 1),
    RISK_BREAKER_COOLDOWN_MS: int(5_000, 100),
    // Money movements at work at once per replica, and how many may wait their turn (more are refused as UNAVAILABLE).
    TRANSFERS_IN_FLIGHT: int(1_000, 1),
    TRANSFERS_QUEUED: int(2_000, 0),
    // How long an authorization holds funds when the request names no expiry, and a transfer awaiting review.
    // At most the ledger's longest hold: a longer one it would refuse, every time.
    HOLD_SECONDS: int(7 * 24 * 3600, 1, LONGEST_HOLD_SECONDS),
    REVIEW_HOLD_SECONDS: int(14 * 24 * 3600, 1, LONGEST_HOLD_SECONDS),
    // Idempotency keys are kept at least this long, then pruned.
    IDEMPOTENCY_TTL_HOURS: int(24, 1),
    // How long a driver's claim on a transfer lasts: a crashed driver's transfers wait this long for recovery.
    DRIVE_LEASE_MS: int(15_000, 100),
    // How often each replica looks for transfers left between steps, and how old they must be.
    RECOVERY_INTERVAL_MS: int(1_000, 10),
    RECOVERY_AFTER_MS: int(5_000, 0),
    // The durable consumers its replicas share.
    EVENTS_DURABLE: localDefault("transactions", env),
    // Test-only fault injection: die (SIGKILL) at this point of the orchestration: "before-<step>",
    // or "applied-<step>" (the ledger has applied the step, the transfer not yet recorded it).
    FAILPOINT: z.string().default(""),
  };
}

/** The transactions service's configuration, read from its environment. */
export const transactionsConfig = (env: Env = process.env) => loadConfig(transactionsEnv(env), env);

export type TransactionsConfig = ReturnType<typeof transactionsConfig>;
