import type { Logger } from "./logger";

/**
 * Runs a task every interval, never overlapping itself (the next run is
 * scheduled when one ends); a failed run is logged and the next one tries
 * again. stop() waits for a run in progress.
 */
export class PeriodicTask {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly name: string,
    private readonly task: () => Promise<unknown>,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    const tick = () => {
      this.running = this.task()
        .catch((err: unknown) => this.log.warn({ task: this.name, err: err instanceof Error ? err.message : String(err) }, "periodic task failed; will retry"))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.intervalMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
