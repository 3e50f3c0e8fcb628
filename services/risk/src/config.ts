import { ConfigError, int, localDefault, loadConfig, platformEnv, type Env } from "../../../platform/config";

/** Every variable the risk service reads, with its type and default. */
export function riskEnv(env: Env = process.env) {
  return {
    ...platformEnv(env),
    GRPC_PORT: int(50053, 0, 65535),
    // The account service: account facts it has not yet learnt from events, and freezes.
    ACCOUNT_SERVICE_URL: localDefault("127.0.0.1:50051", env),
    // Scores at which the sum of ADD_SCORE rules sends a transfer to review, or declines it.
    RISK_REVIEW_SCORE: int(50, 1),
    RISK_DECLINE_SCORE: int(100, 1),
    // How long a replica may use its compiled rules before checking for changes made elsewhere.
    RULES_REFRESH_MS: int(1000, 0),
    // The durable JetStream consumer that replicas share, and how many events each replica applies at once.
    EVENTS_DURABLE: localDefault("risk", env),
    EVENTS_CONCURRENCY: int(4, 1, 64),
    // How long an assessment waits for the account service about an account it has not seen.
    ACCOUNT_LOOKUP_TIMEOUT_MS: int(200, 1),
  };
}

/** The risk service's configuration, read from its environment. */
export const riskConfig = (env: Env = process.env) => loadConfig(riskEnv(env), env);

export type RiskConfig = ReturnType<typeof riskConfig>;

/** The score thresholds must make sense together; checked once at start. */
export function checkThresholds(config: RiskConfig): void {
  if (config.RISK_REVIEW_SCORE > config.RISK_DECLINE_SCORE) {
    throw new ConfigError(`invalid configuration: RISK_REVIEW_SCORE (${config.RISK_REVIEW_SCORE}) is above RISK_DECLINE_SCORE (${config.RISK_DECLINE_SCORE})`);
  }
}
