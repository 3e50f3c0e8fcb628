import { LRUCache } from "lru-cache";
import { DomainError, ErrorReason } from "../../platform/errors";

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per principal: each call takes a token; tokens come back at
 * a steady rate up to the burst. Buckets live in a bounded LRU, so a flood of
 * distinct principals costs bounded memory; a forgotten principal starts full.
 */
export class RateLimiter {
  private readonly buckets = new LRUCache<string, Bucket>({ max: 100_000 });

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes a token for the principal, or refuses with RATE_LIMITED and when to try again. */
  take(principal: string): void {
    const now = this.now();
    const bucket = this.buckets.get(principal) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond);
    bucket.at = now;
    this.buckets.set(principal, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return;
    }
    const retryAfterSeconds = Math.max(1, Math.ceil((1 - bucket.tokens) / this.perSecond));
    throw new DomainError(ErrorReason.RATE_LIMITED, `too many requests; ${this.perSecond} per second are allowed, ${this.burst} at once`, [], {
      retry_after_seconds: String(retryAfterSeconds),
    });
  }
}
