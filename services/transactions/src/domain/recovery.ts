import type { Logger } from "../../../../platform/logger";
import { PeriodicTask } from "../../../../platform/periodic";
import type { IdempotencyKeys } from "./idempotency";
import type { Orchestrator } from "./orchestrator";
import type { Transfers } from "./transfers";

const PRUNE_EVERY_MS = 60_000;

/**
 * Drives to a final state every transfer left between steps — by a crash, a
 * timeout or a dependency that did not answer — once it has rested a while
 * and no driver holds it. Every replica runs one; claims keep them apart.
 */
export class Recovery {
  private readonly periodic: PeriodicTask;
  private stopped = false;
  private lastPrune = 0;

  constructor(
    private readonly transfers: Transfers,
    private readonly orchestrator: Orchestrator,
    private readonly keys: IdempotencyKeys,
    private readonly log: Logger,
    intervalMs: number,
    private readonly afterMs: number,
  ) {
    this.periodic = new PeriodicTask("recovery", () => this.sweep(), intervalMs, log);
  }

  start(): void {
    this.periodic.start();
  }

  stop(): Promise<void> {
    this.stopped = true;
    return this.periodic.stop();
  }

  /** One pass: re-drives what is stalled; returns how many it picked up. */
  async sweep(): Promise<number> {
    const ids = await this.transfers.stalled(this.afterMs, 100);
    for (const id of ids) {
      if (this.stopped) break;
      try {
        await this.orchestrator.drive(id);
      } catch (err) {
        // One transfer that cannot be driven now must not hold back the others behind it: it goes to
        // the back of the line (if it can be touched) and is tried again in a later pass.
        this.log.error({ transfer: id, err: (err as Error).message }, "recovery could not drive a transfer");
        await this.transfers.touch(id).catch(() => {});
      }
    }
    if (ids.length > 0) this.log.info({ transfers: ids.length }, "recovery re-drove stalled transfers");
    if (Date.now() - this.lastPrune > PRUNE_EVERY_MS) {
      this.lastPrune = Date.now();
      await this.keys.prune();
    }
    return ids.length;
  }
}
