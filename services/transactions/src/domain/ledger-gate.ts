import { status as Status } from "@grpc/grpc-js";
import { PostingMode, PostingResult, type LedgerTransfer } from "../../../../gen/tally/account/v1/ledger_pb";
import type { LedgerService, PostTransferResult } from "../../../../gen/tally/account/v1/ledger_service_pb";
import { CallBatcher } from "../../../../platform/call-batcher";
import type { ClientOf } from "../../../../platform/grpc/client";
import { RemoteError } from "../../../../platform/grpc/status";
import type { TransferRow } from "../db/schema";

export type LedgerOutcome = { ok: true; transfer: LedgerTransfer } | { ok: false; result: PostingResult };

type LedgerClient = Pick<ClientOf<typeof LedgerService>, "postTransfers" | "lookupTransfers">;
type PostingItem = NonNullable<Parameters<LedgerClient["postTransfers"]>[0]["transfers"]>[number];

// The ledger refused the request as a whole: one of its items is at fault, so each is sent again alone.
const LEDGER_REFUSALS = new Set([Status.INVALID_ARGUMENT, Status.FAILED_PRECONDITION, Status.NOT_FOUND, Status.ALREADY_EXISTS, Status.OUT_OF_RANGE]);
export const isLedgerRefusal = (err: unknown): err is RemoteError => err instanceof RemoteError && LEDGER_REFUSALS.has(err.code);

/**
 * One call to the ledger at a time per replica; the postings asked for meanwhile go together in the
 * next (up to the ledger's batch limit). A call still out after a second (a thousand postings take
 * a few hundred milliseconds) gives up its place, and one more may go beside it: an account replica
 * that hangs holds its own postings until their deadline, not every posting behind them.
 */
const LEDGER_CALLS = { concurrency: 1, maxItems: 1000, freePlaceAfterMs: 1000 };

/**
 * The ledger operations a transfer needs, each idempotent by its ledger
 * transfer id: re-driving a step after a crash gets EXISTS and the original.
 */
export class LedgerGate {
  /** Concurrent postings share a call: each item is independent (not linked), with its own result. */
  private readonly calls: CallBatcher<PostingItem, PostTransferResult>;

  constructor(private readonly ledger: LedgerClient) {
    this.calls = new CallBatcher("LedgerService/PostTransfers", async (transfers) => (await ledger.postTransfers({ transfers })).results, { ...LEDGER_CALLS, retryAlone: isLedgerRefusal });
  }

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

  /** The transfer's hold as the ledger has it (its state, and what was posted from it), if it has one. */
  async heldAs(row: TransferRow): Promise<LedgerTransfer | undefined> {
    const [hold] = (await this.ledger.lookupTransfers({ transferIds: [row.id] })).transfers;
    return hold;
  }

  private async one(item: PostingItem): Promise<LedgerOutcome> {
    const result = await this.calls.submit(item);
    if ((result.result === PostingResult.OK || result.result === PostingResult.EXISTS) && result.transfer) {
      return { ok: true, transfer: result.transfer };
    }
    return { ok: false, result: result.result };
  }
}

