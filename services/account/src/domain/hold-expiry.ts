import { and, asc, isNotNull, lte, sql } from "drizzle-orm";
import { withTransactionRetry } from "../../../../platform/db/retry";
import type { Logger } from "../../../../platform/logger";
import { PeriodicTask } from "../../../../platform/periodic";
import type { OutboxWriter } from "../../../../platform/outbox/append";
import { ledgerTransfers } from "../db/schema";
import type { AccountDb } from "../db/types";
import { lockAccounts, loadTransfers, writeEffects } from "./ledger-store";
import { expireHolds } from "./posting";

/**
 * Releases the funds of holds past their expiry. Every replica runs one; they
 * lock the same account rows in the same order, so each hold expires once.
 */
export class HoldExpiry {
  private readonly periodic: PeriodicTask;

  constructor(
    private readonly db: AccountDb,
    private readonly outbox: OutboxWriter,
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly afterCommit: () => void = () => {},
    private readonly batchSize = 200,
  ) {
    this.periodic = new PeriodicTask("hold expiry", () => this.releaseAllDue(), intervalMs, log);
  }

  /** Sweeps every interval; a sweep never overlaps the next. */
  start(): void {
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** Sweeps until nothing is due, so a burst of expiries is not released a batch per interval. */
  async releaseAllDue(now = new Date()): Promise<number> {
    let released = 0;
    for (;;) {
      const n = await this.sweep(now);
      released += n;
      if (n < this.batchSize) return released;
    }
  }

  /** Expires up to a batch of what is due now; returns how many holds it released. */
  async sweep(now = new Date()): Promise<number> {
    const due = await this.db
      .select({ id: ledgerTransfers.id, debit: ledgerTransfers.debitAccountId, credit: ledgerTransfers.creditAccountId })
      .from(ledgerTransfers)
      // The state as a literal: a prepared statement's generic plan could not match a parameter to the partial index.
      .where(and(sql`${ledgerTransfers.state} = 'pending'`, isNotNull(ledgerTransfers.expiresAt), lte(ledgerTransfers.expiresAt, now)))
      .orderBy(asc(ledgerTransfers.expiresAt))
      .limit(this.batchSize);
    if (due.length === 0) return 0;
    const released = await this.expire(due, now).catch((err: unknown) => (due.length === 1 ? Promise.reject(err) : this.expireEach(due, now)));
    if (released > 0) {
      this.log.info({ released }, "expired holds released");
      this.afterCommit();
    }
    return released;
  }

  /** Expires the holds in one transaction; returns how many it released. */
  private expire(due: DueHold[], now: Date): Promise<number> {
    return withTransactionRetry(() =>
      this.db.transaction(async (tx) => {
        const accountIds = [...new Set(due.flatMap((d) => [d.debit, d.credit]))].sort();
        const locked = await lockAccounts(tx, accountIds);
        // Re-read under the locks: another replica may have expired, posted or voided them meanwhile.
        const holds = await loadTransfers(tx, due.map((d) => d.id));
        const effects = expireHolds([...holds.values()], { accounts: locked, transfers: holds, refusals: new Map() }, now);
        await writeEffects(tx, effects, this.outbox);
        return effects.finalized.length;
      }),
    );
  }

  /**
   * After a batch failed: each hold alone, so one that cannot be expired does not hold back the
   * rest. It is logged and left for the next sweep. When the first few all fail, the fault is
   * likely the database's, not the holds': the sweep fails as a whole, to be tried again.
   */
  private async expireEach(due: DueHold[], now: Date): Promise<number> {
    let released = 0;
    let failed = 0;
    for (const [i, hold] of due.entries()) {
      try {
        released += await this.expire([hold], now);
      } catch (err) {
        const allFailed = ++failed === i + 1;
        if (allFailed && (failed === GIVE_UP_AFTER_FAILURES || failed === due.length)) throw err;
        this.log.error({ err, transferId: hold.id }, "hold could not be expired; it is tried again on the next sweep");
      }
    }
    return released;
  }
}

type DueHold = { id: string; debit: string; credit: string };
const GIVE_UP_AFTER_FAILURES = 3;
