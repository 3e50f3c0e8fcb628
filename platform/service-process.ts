import { Lifecycle } from "./lifecycle";
import { createLogger, type Logger } from "./logger";
import type { Telemetry } from "./telemetry/start";

interface ProcessConfig {
  LOG_LEVEL: string;
  SHUTDOWN_GRACE_MS: number;
}

/**
 * Runs a service as a process: reads its configuration (a bad one exits
 * naming the variable), starts it, and stops it gracefully on SIGTERM or
 * SIGINT, flushing telemetry last. Its metrics are served from the start.
 */
export function runServiceProcess<C extends ProcessConfig>(
  name: string,
  telemetry: Telemetry,
  loadConfig: () => C,
  start: (config: C, log: Logger, lifecycle: Lifecycle) => Promise<unknown>,
): void {
  const main = async () => {
    const config = loadConfig();
    const log = createLogger(name, config.LOG_LEVEL);
    const lifecycle = new Lifecycle(log, config.SHUTDOWN_GRACE_MS + 1000);
    lifecycle.onStop("telemetry", telemetry.shutdown);
    lifecycle.exitOnSignals();
    try {
      const metrics = await telemetry.serveMetrics(log);
      if (metrics) lifecycle.onStop("metrics server", metrics.close);
      await start(config, log, lifecycle);
    } catch (err) {
      log.fatal({ err }, `${name} service failed to start`);
      await lifecycle.stop("startup failed");
      process.exit(1);
    }
  };
  main().catch((err: unknown) => {
    process.stderr.write(`${name} service: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
