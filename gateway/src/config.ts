import { int, localDefault, loadConfig, platformEnv, type Env } from "../../platform/config";

/** Everything the gateway reads from its environment. */
export function gatewayConfig(env: Env = process.env) {
  const { LOG_LEVEL, GRPC_DEADLINE_MS, SHUTDOWN_GRACE_MS } = platformEnv(env);
  return loadConfig(
    {
      LOG_LEVEL,
      SHUTDOWN_GRACE_MS,
      // The deadline of a backend call when the client names none.
      GRPC_DEADLINE_MS,
      HTTP_HOST: localDefault("0.0.0.0", env),
      HTTP_PORT: int(8080, 0, 65535),
      ACCOUNT_SERVICE_URL: localDefault("127.0.0.1:50051", env),
      TRANSACTIONS_SERVICE_URL: localDefault("127.0.0.1:50052", env),
      RISK_SERVICE_URL: localDefault("127.0.0.1:50053", env),
      // Client deadlines are honoured up to this.
      MAX_DEADLINE_MS: int(30_000, 1),
    },
    env,
  );
}

export type GatewayConfig = ReturnType<typeof gatewayConfig>;
