import { context, type Context } from "@opentelemetry/api";

export interface GroupCommitOptions {
  /** Groups committing at once. */
  concurrency: number;
  /** Items (transfers) in one group at most; a request larger than this still goes alone. */
  maxItems: number;
}

interface Waiting<R, O> {
  items: R[];
  /** The caller's trace context: the group runs in its first request's. */
  context: Context;
  resolve(outcomes: O[]): void;
  reject(err: unknown): void;
}

/**
 * Group commit: requests that arrive while `concurrency` groups are already
 * committing wait, and then commit together — one transaction, one round
 * trip, one turn at a hot row's lock for all of them. Under light load a
 * request waits for nothing. `commit` gets the requests of a group in arrival
 * order and returns each one's outcomes; if it fails for a group of several,
 * each is committed again alone, so one request's failure is never another's.
 */
export class GroupCommit<R, O> {
  private readonly queue: Waiting<R, O>[] = [];
  private running = 0;

  constructor(
    private readonly commit: (requests: R[][]) => Promise<O[][]>,
    private readonly options: GroupCommitOptions,
  ) {}

  submit(items: R[]): Promise<O[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ items, context: context.active(), resolve, reject });
      this.drain();
    });
  }

  private drain(): void {
    while (this.running < this.options.concurrency && this.queue.length > 0) {
      const group = this.take();
      this.running++;
      void context
        .with(group[0].context, () => this.settle(group))
        .finally(() => {
          this.running--;
          this.drain();
        });
    }
  }

  /** The longest run from the head of the queue that fits in one group. */
  private take(): Waiting<R, O>[] {
    const group = [this.queue.shift()!];
    let items = group[0].items.length;
    while (this.queue.length > 0 && items + this.queue[0].items.length <= this.options.maxItems) {
      items += this.queue[0].items.length;
      group.push(this.queue.shift()!);
    }
    return group;
  }

  private async settle(group: Waiting<R, O>[]): Promise<void> {
    try {
      const outcomes = await this.commit(group.map((w) => w.items));
      group.forEach((w, i) => w.resolve(outcomes[i]));
    } catch (err) {
      if (group.length === 1) return group[0].reject(err);
      await Promise.all(group.map((w) => context.with(w.context, () => this.settle([w]))));
    }
  }
}
