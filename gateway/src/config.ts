import { z } from "zod";
import { bool, ConfigError, int, isProduction, localDefault, loadConfig, platformEnv, type Env } from "../../platform/config";

// Outside production, tokens are signed with this well-known secret so `npm start` works at once; production needs its own.
export const DEVELOPMENT_SECRET = "tally-local-development-secret-not-for-production";

/**
 * Anyone can sign tokens with the published secret, so a gateway run for production refuses it:
 * TALLY_ENV=production, or NODE_ENV=production as the container image sets, unless a local trial
 * says AUTH_ALLOW_DEVELOPMENT_SECRET=true outright.
 */
const developmentSecretAllowed = (env: Env, allowed: boolean) => allowed || !(isProduction(env) || env.NODE_ENV === "production");

const list = z
  .string()
  .default("")
  .transform((v) =>
    v
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
  );

/** Every variable the gateway reads, with its type and default. */
export function gatewayEnv(env: Env = process.env) {
  const { LOG_LEVEL, GRPC_DEADLINE_MS, SHUTDOWN_GRACE_MS } = platformEnv(env);
  return {
    LOG_LEVEL,
    SHUTDOWN_GRACE_MS,
    // The deadline of a backend call when the client names none.
    GRPC_DEADLINE_MS,
    HTTP_HOST: localDefault("0.0.0.0", env),
    HTTP_PORT: int(8080, 0, 65535),
    // Both set: the port speaks TLS (HTTP/2 with HTTP/1.1 fallback) instead of cleartext.
    TLS_CERT_FILE: z.string().optional(),
    TLS_KEY_FILE: z.string().optional(),
    // Each a comma-separated list of host:port, one per replica; calls go round-robin.
    ACCOUNT_SERVICE_URL: localDefault("127.0.0.1:50051", env),
    TRANSACTIONS_SERVICE_URL: localDefault("127.0.0.1:50052", env),
    RISK_SERVICE_URL: localDefault("127.0.0.1:50053", env),
    // Client deadlines are honoured up to this.
    MAX_DEADLINE_MS: int(30_000, 1),
    // Production verifies tokens against the identity provider's keys; development against a shared HS256 secret.
    AUTH_JWKS_URL: z.string().url().optional(),
    AUTH_HS256_SECRET: z.string().min(32).optional(),
    AUTH_ALLOW_DEVELOPMENT_SECRET: bool(false),
    AUTH_ISSUER: localDefault("tally-local", env),
    AUTH_AUDIENCE: localDefault("tally", env),
    // Per principal: a token bucket refilled at this rate, holding at most the burst.
    RATE_LIMIT_PER_SECOND: int(100, 1),
    RATE_LIMIT_BURST: int(200, 1),
    // Largest request body (any protocol) and how long a backend stays written off after failing.
    MAX_REQUEST_BYTES: int(1024 * 1024, 1024),
    BREAKER_FAILURES: int(5, 1),
    BREAKER_COOLDOWN_MS: int(2_000, 10),
    // Balance reads' calls to the account service at once; the reads that arrive meanwhile share the next.
    // A call still out after BALANCE_LOOKUP_PLACE_MS gives up its place (a replica may hang).
    BALANCE_LOOKUPS_IN_FLIGHT: int(4, 1),
    BALANCE_LOOKUP_PLACE_MS: int(200, 1),
    // Browser origins allowed to call the API (CORS), comma-separated; none by default.
    CORS_ORIGINS: list,
  };
}

/** The gateway's configuration, read from its environment and checked as a whole. */
export function gatewayConfig(env: Env = process.env) {
  const config = loadConfig(gatewayEnv(env), env);
  const developmentAllowed = developmentSecretAllowed(env, config.AUTH_ALLOW_DEVELOPMENT_SECRET);
  if (config.AUTH_HS256_SECRET === DEVELOPMENT_SECRET && !developmentAllowed) {
    throw new ConfigError("invalid configuration: AUTH_HS256_SECRET is the published development secret, which anyone can sign tokens with; give production its own (or AUTH_JWKS_URL)");
  }
  if (!config.AUTH_HS256_SECRET && developmentAllowed) config.AUTH_HS256_SECRET = DEVELOPMENT_SECRET;
  if (!config.AUTH_JWKS_URL && !config.AUTH_HS256_SECRET) throw new ConfigError("invalid configuration: AUTH_JWKS_URL or AUTH_HS256_SECRET must be set");
  if (Boolean(config.TLS_CERT_FILE) !== Boolean(config.TLS_KEY_FILE)) throw new ConfigError("invalid configuration: TLS_CERT_FILE and TLS_KEY_FILE go together");
  return config;
}

export type GatewayConfig = ReturnType<typeof gatewayConfig>;
