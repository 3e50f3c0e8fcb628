import { PostingMode, PostingResult, type LedgerTransfer } from "../../../../gen/tally/account/v1/ledger_pb";
import type { LedgerService } from "../../../../gen/tally/account/v1/ledger_service_pb";
import type { ClientOf } from "../../../../platform/grpc/client";
import type { TransferRow } from "../db/schema";

export type LedgerOutcome = { ok: true; transfer: LedgerTransfer } | { ok: false; result: PostingResult };

/**
 * The ledger operations a transfer needs, each idempotent by its ledger
 * transfer id: re-driving a step after a crash gets EXISTS and the original.
 */
export class LedgerGate {
  constructor(private readonly ledger: Pick<ClientOf<typeof LedgerService>, "postTransfers">) {}

  post(row: TransferRow): Promise<LedgerOutcome> {
    return this.one({ id: row.id, debitAccountId: row.fromAccountId, creditAccountId: row.toAccountId, amount: row.amount, currency: row.currency, mode: PostingMode.POST });
  }

  hold(row: TransferRow): Promise<LedgerOutcome> {
    return this.one({
      id: row.id,
      debitAccountId: row.fromAccountId,
      creditAccountId: row.toAccountId,
      amount: row.amount,
      currency: row.currency,
      mode: PostingMode.PENDING,
      timeoutSeconds: row.holdSeconds,
    });
  }

  /** Posts `amount` of the hold (all of it when 0); the rest is released. */
  capture(row: TransferRow, finalizeId: string, amount: bigint): Promise<LedgerOutcome> {
    return this.one({ id: finalizeId, pendingId: row.id, amount, mode: PostingMode.POST_PENDING });
  }

  void(row: TransferRow, finalizeId: string): Promise<LedgerOutcome> {
    return this.one({ id: finalizeId, pendingId: row.id, mode: PostingMode.VOID_PENDING });
  }

  private async one(item: Parameters<ClientOf<typeof LedgerService>["postTransfers"]>[0]["transfers"] extends (infer T)[] | undefined ? T : never): Promise<LedgerOutcome> {
    const { results } = await this.ledger.postTransfers({ transfers: [item] });
    const [result] = results;
    if ((result.result === PostingResult.OK || result.result === PostingResult.EXISTS) && result.transfer) {
      return { ok: true, transfer: result.transfer };
    }
    return { ok: false, result: result.result };
  }
}

