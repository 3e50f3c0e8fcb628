import { context, metrics } from "@opentelemetry/api";
import { DomainError, ErrorReason } from "./errors";

/**
 * Admission control: at most `inFlight` requests at work at once, the rest
 * waiting their turn in order of arrival (up to `queued`, then refused as
 * UNAVAILABLE, to be sent again later). A request that waits has started
 * nothing — it holds no database connection, and no deadline of a call it
 * will make is running — so past the service's capacity the work in progress
 * stays fast instead of every request slowing down together until the calls
 * they make time out.
 *
 * Its own few lines rather than cockatiel's bulkhead, which leaves a request
 * whose caller gave up in its queue until its turn comes, and then spends
 * that turn on it: the live requests behind it wait with a place free.
 */
export class AdmissionLimit {
  private active = 0;
  /** Each waiting request's start, in order of arrival. */
  private readonly waiting = new Set<() => void>();
  private readonly refused = metrics.getMeter("tally.admission").createCounter("admission.refused", {
    unit: "{request}",
    description: "Requests refused because the queue was full",
  });

  constructor(
    readonly inFlight: number,
    readonly queued: number,
  ) {}

  /** Runs `work` once a place is free; `signal` takes it out of the queue at once when its caller gives up. */
  async run<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw cancelled();
    // A queued request is started from the end of another one: it must run in its own trace, not that one's.
    const own = context.active();
    if (this.active < this.inFlight) this.active++;
    else await this.turn(signal);
    try {
      return await context.with(own, work);
    } finally {
      this.next();
    }
  }

  /** Waits in the queue until a request at work hands its place over. */
  private turn(signal?: AbortSignal): Promise<void> {
    if (this.waiting.size >= this.queued) {
      this.refused.add(1);
      throw new DomainError(ErrorReason.OVERLOADED, `busy: ${this.inFlight} requests at work and ${this.queued} waiting; try again`);
    }
    return new Promise((resolve, reject) => {
      const start = () => {
        signal?.removeEventListener("abort", giveUp);
        resolve();
      };
      const giveUp = () => {
        this.waiting.delete(start);
        reject(cancelled());
      };
      this.waiting.add(start);
      signal?.addEventListener("abort", giveUp, { once: true });
    });
  }

  /** A request ended: its place goes to the first waiting, or is freed. */
  private next(): void {
    const [first] = this.waiting;
    if (!first) {
      this.active--;
      return;
    }
    this.waiting.delete(first);
    first();
  }
}

const cancelled = () => new DomainError(ErrorReason.DEADLINE_EXCEEDED, "the caller stopped waiting before its turn came");
