import { int, loadConfig, platformEnv, type Env } from "../../../platform/config";

/** Every variable the account service reads, with its type and default. */
export function accountEnv(env: Env = process.env) {
  return {
    ...platformEnv(env),
    GRPC_PORT: int(50051, 0, 65535),
    // How often each replica looks for holds past their expiry.
    HOLD_EXPIRY_INTERVAL_MS: int(1000, 10),
    // Posting transactions at once per replica; requests that arrive meanwhile commit together (group commit).
    LEDGER_CONCURRENT_COMMITS: int(4, 1, 64),
  };
}

/** The account service's configuration, read from its environment. */
export const accountConfig = (env: Env = process.env) => loadConfig(accountEnv(env), env);

export type AccountConfig = ReturnType<typeof accountConfig>;
