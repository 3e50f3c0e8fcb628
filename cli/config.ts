import { z } from "zod";
import { gatewayConfig } from "../gateway/src/config";
import { loadConfig, platformEnv, type Env } from "../platform/config";

/** What the demo and the command line read from their environment. */
export function cliConfig(env: Env = process.env) {
  const { NATS_URL, NATS_STREAM } = platformEnv(env);
  const config = loadConfig(
    {
      TALLY_URL: z.string().url().default("http://127.0.0.1:8080"),
      TALLY_TOKEN: z.string().optional(),
      JAEGER_URL: z.string().url().default("http://localhost:16686"),
      // events tail reads the stream itself.
      NATS_URL,
      NATS_STREAM,
      // reconcile asks the account service itself: the ledger's check is not served through the gateway.
      ACCOUNT_SERVICE_URL: z.string().default("127.0.0.1:50051"),
    },
    env,
  );
  // Development tokens are minted as the gateway these tools talk to verifies them; read only when one is needed.
  return { ...config, gateway: () => gatewayConfig(env) };
}
