import type { Logger } from "./logger";

type StopStep = { name: string; stop: () => Promise<void> | void };

/**
 * Graceful shutdown: steps registered as a process starts run in reverse
 * order when it stops (stop serving, drain, close the broker and the pool,
 * flush spans), each bounded so a stuck step cannot hold the exit.
 */
export class Lifecycle {
  private readonly steps: StopStep[] = [];
  private state: "running" | "stopping" | "stopped" = "running";
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly log: Logger,
    private readonly stepTimeoutMs = 10_000,
  ) {}

  /** Registers how to undo what was just started. Registered while stopping, it runs after the rest. */
  onStop(name: string, stop: StopStep["stop"]): void {
    if (this.state === "running") this.steps.unshift({ name, stop });
    else if (this.state === "stopping") this.steps.push({ name, stop });
    else void this.runStep({ name, stop });
  }

  stop(reason: string): Promise<void> {
    if (this.state === "running") {
      this.state = "stopping";
      this.stopping = this.runSteps(reason);
    }
    return this.stopping!;
  }

  /** SIGTERM and SIGINT stop the process gracefully; a second signal exits at once. */
  exitOnSignals(): void {
    const onSignal = (signal: NodeJS.Signals) => {
      if (this.stopping) {
        this.log.warn({ signal }, "second signal: exiting now");
        process.exit(1);
      }
      this.stop(signal).then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  }

  private async runSteps(reason: string): Promise<void> {
    this.log.info({ reason }, "shutting down");
    for (let step = this.steps.shift(); step; step = this.steps.shift()) await this.runStep(step);
    this.state = "stopped";
    this.log.info("stopped");
  }

  private async runStep(step: StopStep): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.stepTimeoutMs);
    });
    const started = Date.now();
    try {
      const outcome = await Promise.race([Promise.resolve(step.stop()).then(() => "done" as const), timeout]);
      if (outcome === "timeout") this.log.warn({ step: step.name }, "shutdown step timed out");
      else this.log.info({ step: step.name, ms: Date.now() - started }, "shutdown step done");
    } catch (err) {
      this.log.error({ err, step: step.name }, "shutdown step failed");
    } finally {
      clearTimeout(timer);
    }
  }
}
