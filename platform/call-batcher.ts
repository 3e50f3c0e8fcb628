import { context, SpanStatusCode, trace, type Context, type Link } from "@opentelemetry/api";
import { hrTime } from "@opentelemetry/core";
import { GroupCommit } from "./group-commit";

const tracer = trace.getTracer("tally.batch");

export interface CallBatcherOptions {
  /** Calls in flight at once; items that arrive meanwhile wait and go together in the next. */
  concurrency: number;
  /** Items in one call at most. */
  maxItems: number;
  /** A failed call of several items whose items are then sent again one by one (a refusal of the request, say); otherwise all fail with it. */
  retryAlone: (err: unknown) => boolean;
}

interface Member<I> {
  item: I;
  /** The caller's trace, and when it asked. */
  context: Context;
  at: ReturnType<typeof hrTime>;
}

/**
 * Coalesces the concurrent calls of a batch RPC (group commit, for a call): an item
 * submitted while `concurrency` calls are in flight waits and goes with the others
 * that arrive meanwhile, in one call, so a round trip, a transaction and a span on
 * the other side are paid per batch rather than per item. A lone item goes at once.
 *
 * A call made for several callers runs in the first one's trace, in a span linked to
 * every caller's; each other caller's trace gets a span for its item, from when it
 * asked to when it was answered, linked to that call: every transfer's trace still
 * leads to the work done for it.
 */
export class CallBatcher<I, O> {
  private readonly group: GroupCommit<Member<I>, O>;

  constructor(
    private readonly name: string,
    private readonly call: (items: I[]) => Promise<O[]>,
    options: CallBatcherOptions,
  ) {
    this.group = new GroupCommit(async (groups) => {
      const outcomes = await this.send(groups.flat());
      let next = 0;
      return groups.map((g) => outcomes.slice(next, (next += g.length)));
    }, options);
  }

  async submit(item: I): Promise<O> {
    const [outcome] = await this.submitMany([item]);
    return outcome;
  }

  /** Items one caller needs together: they go in one call (more than `maxItems` go in one call of their own). */
  submitMany(items: I[]): Promise<O[]> {
    const asked = { context: context.active(), at: hrTime() };
    return this.group.submit(items.map((item) => ({ item, ...asked })));
  }

  private async send(members: Member<I>[]): Promise<O[]> {
    const items = members.map((m) => m.item);
    // Each caller's first item: one caller's items, however many, are that caller's call.
    const firsts = new Map<Context, Member<I>>();
    for (const m of members) if (!firsts.has(m.context)) firsts.set(m.context, m);
    const callers = [...firsts.values()];
    if (callers.length === 1) return this.call(items);
    const links: Link[] = callers.flatMap((m) => {
      const caller = trace.getSpanContext(m.context);
      return caller ? [{ context: caller }] : [];
    });
    const batch = tracer.startSpan(`${this.name} batch`, { links, attributes: { "tally.batch.size": members.length } });
    const batchLink: Link[] = [{ context: batch.spanContext() }];
    let failure: unknown;
    try {
      return await context.with(trace.setSpan(context.active(), batch), () => this.call(items));
    } catch (err) {
      failure = err;
      batch.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      batch.end();
      // The first caller's trace holds the call itself; each other's, a span of its own linked to it.
      for (const m of callers.slice(1)) {
        const span = tracer.startSpan(this.name, { startTime: m.at, links: batchLink, attributes: { "tally.batch.size": members.length } }, m.context);
        if (failure !== undefined) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      }
    }
  }
}
