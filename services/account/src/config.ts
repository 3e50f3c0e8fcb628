import { int, loadConfig, platformEnv, type Env } from "../../../platform/config";

/** Everything the account service reads from its environment. */
export function accountConfig(env: Env = process.env) {
  return loadConfig(
    {
      ...platformEnv(env),
      GRPC_PORT: int(50051, 0, 65535),
      // How often each replica looks for holds past their expiry.
      HOLD_EXPIRY_INTERVAL_MS: int(1000, 10),
    },
    env,
  );
}

export type AccountConfig = ReturnType<typeof accountConfig>;
