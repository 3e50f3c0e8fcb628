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
    const released = await withTransactionRetry(() =>
      this.db.transaction(async (tx) => {
        const accountIds = [...new Set(due.flatMap((d) => [d.debit, d.credit]))].sort();
        const locked = await lockAccounts(tx, accountIds);
        // Re-read under the locks: another replica may have expired, posted or voided them meanwhile.
        const holds = await loadTransfers(tx, due.map((d) => d.id));
        const effects = expireHolds([...holds.values()], { accounts: locked, transfers: holds }, now);
        await writeEffects(tx, effects, this.outbox);
        return effects.finalized.length;
      }),
    );
    if (released > 0) {
      this.log.info({ released }, "expired holds released");
      this.afterCommit();
    }
    return released;
  }
}
