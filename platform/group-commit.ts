import { context, SpanStatusCode, trace, type Context, type HrTime, type Link } from "@opentelemetry/api";
import { hrTime } from "@opentelemetry/core";

const tracer = trace.getTracer("tally.batch");

export interface GroupCommitOptions {
  /** Groups committing at once. */
  concurrency: number;
  /** Items (transfers) in one group at most; a request larger than this still goes alone. */
  maxItems: number;
  /** Requests sharing a key never commit in one group either: each sees the one before it committed. */
  onePerKey?: boolean;
  /** Whether a failed group's requests are tried again one by one (the default) or all fail with it. */
  retryAlone?: (err: unknown) => boolean;
  /** Names the spans that tie a group shared by several callers to each caller's trace (none without a name). */
  name?: string;
  /**
   * How each other caller's trace is tied to a shared group: a span of its own linked to it (the
   * default), or, where that costs too much for a path every request takes, an event on the
   * caller's span naming the group's trace and span.
   */
  tieBy?: "span" | "event";
  /**
   * A group still at work after this long gives up its place to the next (the keys it locks stay
   * held until it ends): for calls, so that a peer that hangs cannot hold every place while the
   * others answer. At most `concurrency` groups are out so beyond their places at once (a peer
   * merely slow still holds the rest back): another that overruns gives its place up when one of
   * those ends.
   */
  freePlaceAfterMs?: number;
}

/** A group at work: whether it still holds its place. */
interface Out {
  holdsPlace: boolean;
}

/** The rows an item locks (its accounts): a request waits rather than commit beside a group that locks any of them. */
export type LockKeys<R> = (item: R) => string[];

interface Waiting<R, O> {
  items: R[];
  keys: string[];
  /** The caller's trace context (the group runs in its first request's), and when it asked. */
  context: Context;
  at: HrTime;
  resolve(outcomes: O[]): void;
  reject(err: unknown): void;
}

/**
 * Group commit: requests that arrive while `concurrency` groups are already
 * committing wait, and then commit together — one transaction, one round
 * trip, one turn at a hot row's lock for all of them. Under light load a
 * request waits for nothing. `commit` gets the requests of a group in arrival
 * order and returns each one's outcomes; if it fails for a group of several,
 * each is committed again alone, so one request's failure is never another's
 * (unless `retryAlone` says the failure is everyone's: a peer that is down).
 *
 * With `keys`, a request that locks a row a committing group has locked waits
 * for that group instead of starting a transaction that would only queue on
 * the lock; the requests waiting for a hot row then commit together, in one
 * turn at it, while requests for other rows go ahead beside them.
 */
export class GroupCommit<R, O> {
  private readonly queue: Waiting<R, O>[] = [];
  private running = 0;
  /** The keys committing groups hold, with how many groups hold each. */
  private readonly locked = new Map<string, number>();
  /** Groups out beyond their places (freePlaceAfterMs), and those overrunning that wait to join them. */
  private beyond = 0;
  private readonly overrunning = new Set<Out>();

  constructor(
    private readonly commit: (requests: R[][]) => Promise<O[][]>,
    private readonly options: GroupCommitOptions,
    private readonly keys: LockKeys<R> = () => [],
  ) {}

  submit(items: R[]): Promise<O[]> {
    return new Promise((resolve, reject) => {
      const keys = [...new Set(items.flatMap(this.keys))].filter((k) => k !== "");
      this.queue.push({ items, keys, context: context.active(), at: hrTime(), resolve, reject });
      this.drain();
    });
  }

  private drain(): void {
    while (this.running < this.options.concurrency) {
      const group = this.take();
      if (group.length === 0) return;
      const keys = group.flatMap((w) => w.keys);
      for (const key of keys) this.locked.set(key, (this.locked.get(key) ?? 0) + 1);
      this.running++;
      const out: Out = { holdsPlace: true };
      const late = this.options.freePlaceAfterMs === undefined ? undefined : setTimeout(() => this.overran(out), this.options.freePlaceAfterMs).unref();
      void context
        .with(group[0].context, () => this.settle(group))
        .finally(() => {
          clearTimeout(late);
          for (const key of keys) {
            const holders = this.locked.get(key)! - 1;
            if (holders === 0) this.locked.delete(key);
            else this.locked.set(key, holders);
          }
          this.ended(out);
          this.drain();
        });
    }
  }

  /** A group at work past freePlaceAfterMs: it gives up its place now, or when one out beyond its place ends. */
  private overran(out: Out): void {
    if (this.beyond >= this.options.concurrency) {
      this.overrunning.add(out);
      return;
    }
    this.giveUpPlace(out);
    this.drain();
  }

  private giveUpPlace(out: Out): void {
    out.holdsPlace = false;
    this.running--;
    this.beyond++;
  }

  private ended(out: Out): void {
    this.overrunning.delete(out);
    if (out.holdsPlace) {
      this.running--;
      return;
    }
    this.beyond--;
    const [next] = this.overrunning;
    if (next) {
      this.overrunning.delete(next);
      this.giveUpPlace(next);
    }
  }

  /**
   * From the head of the queue, the requests that fit in one group and lock nothing a committing
   * group holds, nor anything an earlier request held back waits for: first come, first served on
   * every key, so a request that needs two busy keys is never passed over without end by those
   * that need one of them.
   */
  private take(): Waiting<R, O>[] {
    const group: Waiting<R, O>[] = [];
    const inGroup = new Set<string>();
    const awaited = new Set<string>();
    let items = 0;
    for (let i = 0; i < this.queue.length; ) {
      const waiting = this.queue[i];
      if (waiting.keys.some((key) => this.locked.has(key) || inGroup.has(key) || awaited.has(key))) {
        for (const key of waiting.keys) awaited.add(key);
        i++;
        continue;
      }
      if (group.length > 0 && items + waiting.items.length > this.options.maxItems) break;
      group.push(waiting);
      if (this.options.onePerKey) for (const key of waiting.keys) inGroup.add(key);
      items += waiting.items.length;
      this.queue.splice(i, 1);
    }
    return group;
  }

  private async settle(group: Waiting<R, O>[]): Promise<void> {
    try {
      const outcomes = await this.traced(group, () => this.commit(group.map((w) => w.items)));
      group.forEach((w, i) => w.resolve(outcomes[i]));
    } catch (err) {
      if (group.length === 1) return group[0].reject(err);
      if (this.options.retryAlone && !this.options.retryAlone(err)) return group.forEach((w) => w.reject(err));
      await Promise.all(group.map((w) => context.with(w.context, () => this.settle([w]))));
    }
  }

  /**
   * A group of several callers' requests runs in the first one's trace, in a span linked to every
   * caller's; each other caller's trace gets a span of its own, from when it asked to when the
   * group ended, linked to that one: every request's trace still leads to the work done for it.
   */
  private async traced<T>(group: Waiting<R, O>[], run: () => Promise<T>): Promise<T> {
    if (!this.options.name || group.length === 1) return run();
    const callers = [...new Map(group.map((w) => [w.context, w] as const)).values()];
    if (callers.length === 1) return run();
    const size = group.reduce((n, w) => n + w.items.length, 0);
    const links: Link[] = callers.flatMap((w) => {
      const caller = trace.getSpanContext(w.context);
      return caller ? [{ context: caller }] : [];
    });
    const shared = tracer.startSpan(`${this.options.name} batch`, { links, attributes: { "tally.batch.size": size } });
    let failure: unknown;
    try {
      return await context.with(trace.setSpan(context.active(), shared), run);
    } catch (err) {
      failure = err;
      shared.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      shared.end();
      const group = shared.spanContext();
      for (const w of callers.slice(1)) {
        if (this.options.tieBy === "event") {
          trace.getSpan(w.context)?.addEvent(this.options.name, { "tally.batch.trace_id": group.traceId, "tally.batch.span_id": group.spanId, "tally.batch.size": size, "tally.batch.failed": failure !== undefined });
          continue;
        }
        const own = tracer.startSpan(this.options.name, { startTime: w.at, links: [{ context: group }], attributes: { "tally.batch.size": size } }, w.context);
        if (failure !== undefined) own.setStatus({ code: SpanStatusCode.ERROR });
        own.end();
      }
    }
  }
}
