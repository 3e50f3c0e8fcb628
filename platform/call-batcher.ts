import { GroupCommit } from "./group-commit";

export interface CallBatcherOptions {
  /** Calls in flight at once; items that arrive meanwhile wait and go together in the next. */
  concurrency: number;
  /** Items in one call at most. */
  maxItems: number;
  /** A failed call of several items whose items are then sent again one by one (a refusal of the request, say); otherwise all fail with it. */
  retryAlone: (err: unknown) => boolean;
  /** A call still out after this long gives up its place to the next (see GroupCommitOptions). */
  freePlaceAfterMs?: number;
}

/**
 * Coalesces the concurrent calls of a batch RPC (group commit, for a call): an item
 * submitted while `concurrency` calls are in flight waits and goes with the others
 * that arrive meanwhile, in one call, so a round trip, a transaction and a span on
 * the other side are paid per batch rather than per item. A lone item goes at once.
 *
 * A call made for several callers runs in the first one's trace, in a span linked to
 * every caller's; each other caller's trace gets a span for its items, from when it
 * asked to when it was answered, linked to that call (group-commit.ts): every
 * transfer's trace still leads to the work done for it.
 */
export class CallBatcher<I, O> {
  private readonly group: GroupCommit<I, O>;

  constructor(name: string, call: (items: I[]) => Promise<O[]>, options: CallBatcherOptions) {
    this.group = new GroupCommit(
      async (groups) => {
        const outcomes = await call(groups.flat());
        let next = 0;
        return groups.map((g) => outcomes.slice(next, (next += g.length)));
      },
      { ...options, name },
    );
  }

  async submit(item: I): Promise<O> {
    const [outcome] = await this.submitMany([item]);
    return outcome;
  }

  /** Items one caller needs together: they go in one call (more than `maxItems` go in one call of their own). */
  submitMany(items: I[]): Promise<O[]> {
    return this.group.submit(items);
  }
}
