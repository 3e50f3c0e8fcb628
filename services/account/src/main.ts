import { telemetry } from "./instrument";
import { Lifecycle } from "../../../platform/lifecycle";
import { createLogger } from "../../../platform/logger";
import { accountConfig } from "./config";
import { startAccountService } from "./service";
import { SERVICE_NAME } from "./service-name";

async function main(): Promise<void> {
  const config = accountConfig();
  const log = createLogger(SERVICE_NAME, config.LOG_LEVEL);
  const lifecycle = new Lifecycle(log, config.SHUTDOWN_GRACE_MS + 1000);
  lifecycle.onStop("telemetry", telemetry.shutdown);
  lifecycle.exitOnSignals();
  try {
    await startAccountService(config, log, lifecycle);
  } catch (err) {
    log.fatal({ err }, "account service failed to start");
    await lifecycle.stop("startup failed");
    process.exit(1);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`account service: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
