import { BreachKind } from "../../../../gen/tally/account/v1/ledger_service_pb";
import type { LedgerService } from "../../../../gen/tally/account/v1/ledger_service_pb";
import type { HandlersOf } from "../../../../platform/grpc/server";
import { normalizeId } from "../../../../platform/ids";
import type { Ledger } from "../domain/ledger";
import type { BreachKind as BreachKindName, Reconciliation } from "../domain/reconciliation";
import { modeName, transferMessage } from "../proto";

const BREACH: Record<BreachKindName, BreachKind> = {
  unbalanced_currency: BreachKind.UNBALANCED_CURRENCY,
  balance_mismatch: BreachKind.BALANCE_MISMATCH,
  limit_exceeded: BreachKind.LIMIT_EXCEEDED,
  transfer_applied_twice: BreachKind.TRANSFER_APPLIED_TWICE,
  unbalanced_transfer: BreachKind.UNBALANCED_TRANSFER,
};

/** LedgerService over gRPC (internal): decode, call the ledger, encode. */
export function ledgerHandlers(ledger: Ledger, reconcile: () => Promise<Reconciliation>): HandlersOf<typeof LedgerService> {
  return {
    async postTransfers(req) {
      const outcomes = await ledger.postTransfers(
        req.transfers.map((t) => ({
          id: normalizeId(t.id),
          debitAccountId: normalizeId(t.debitAccountId),
          creditAccountId: normalizeId(t.creditAccountId),
          amount: t.amount,
          currency: t.currency,
          mode: modeName(t.mode),
          pendingId: normalizeId(t.pendingId),
          timeoutSeconds: t.timeoutSeconds,
          linked: t.linked,
          metadata: t.metadata,
        })),
      );
      return {
        results: outcomes.map((o) => ({
          index: o.index,
          transferId: o.transferId,
          result: o.result,
          transfer: o.transfer ? transferMessage(o.transfer) : undefined,
        })),
      };
    },
    async lookupTransfers(req) {
      return { transfers: (await ledger.lookupTransfers(req.transferIds.map(normalizeId))).map(transferMessage) };
    },
    async reconcile() {
      const r = await reconcile();
      return {
        balanced: r.breaches.length === 0,
        breaches: r.breaches.map((b) => ({ kind: BREACH[b.kind], subject: b.subject, detail: b.detail })),
        accountsChecked: r.accountsChecked,
        entriesChecked: r.entriesChecked,
        transfersChecked: r.transfersChecked,
        totals: r.totals,
      };
    },
  };
}
