import { context, metrics } from "@opentelemetry/api";
import { bulkhead, BulkheadRejectedError, TaskCancelledError } from "cockatiel";
import { DomainError, ErrorReason } from "./errors";

/**
 * Admission control: at most `inFlight` requests at work at once, the rest
 * waiting their turn (up to `queued`, then refused as UNAVAILABLE, to be sent
 * again later). A request that waits has started nothing — it holds no
 * database connection, and no deadline of a call it will make is running —
 * so past the service's capacity the work in progress stays fast instead of
 * every request slowing down together until the calls they make time out.
 */
export class AdmissionLimit {
  private readonly policy;
  private readonly refused = metrics.getMeter("tally.admission").createCounter("admission.refused", {
    unit: "{request}",
    description: "Requests refused because the queue was full",
  });

  constructor(
    readonly inFlight: number,
    readonly queued: number,
  ) {
    this.policy = bulkhead(inFlight, queued);
  }

  /** Runs `work` once a place is free; `signal` drops it from the queue when its caller gives up. */
  async run<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    // A queued request is started from the end of another one: it must run in its own trace, not that one's.
    const own = context.active();
    try {
      return await this.policy.execute(() => context.with(own, work), signal);
    } catch (err) {
      if (err instanceof BulkheadRejectedError) {
        this.refused.add(1);
        throw new DomainError(ErrorReason.OVERLOADED, `busy: ${this.inFlight} requests at work and ${this.queued} waiting; try again`);
      }
      if (err instanceof TaskCancelledError) throw new DomainError(ErrorReason.DEADLINE_EXCEEDED, "the caller stopped waiting before its turn came");
      throw err;
    }
  }
}
