import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { trace } from "@opentelemetry/api";
import { setImmediate } from "node:timers/promises";
import type { Money } from "../../../../gen/tally/common/v1/money_pb";
import {
  AuthorizeTransferRequestSchema,
  CaptureTransferRequestSchema,
  CreateDepositRequestSchema,
  CreateTransferRequestSchema,
  CreateWithdrawalRequestSchema,
  ReverseTransferRequestSchema,
  VoidTransferRequestSchema,
  type CreateTransferRequest,
  type TransactionService,
} from "../../../../gen/tally/transactions/v1/transaction_service_pb";
import { TransferKind, TransferStatus, type Transfer } from "../../../../gen/tally/transactions/v1/transfer_pb";
import type { AdmissionLimit } from "../../../../platform/admission";
import { callerOf } from "../../../../platform/caller";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import type { HandlersOf } from "../../../../platform/grpc/server";
import { requireTimestamp } from "../../../../platform/validation";
import type { TransferStatusName } from "../db/schema";
import { fingerprint } from "../domain/idempotency";
import type { NewMovement, Operations } from "../domain/operations";
import type { Transfers } from "../domain/transfers";
import { STATUS, transferMessage } from "../proto";

type MovementRequest = { requestId: string; amount?: Money; description: string; metadata: Record<string, string>; transferId: string };

export const MAX_BATCH = 1000;
// A batch's items start this many at a time, with timers and sockets let in between.
const BATCH_SLICE = 50;

/** TransactionService over gRPC: decode, call the domain (money movements in their turn), encode. */
export function transactionHandlers(ops: Operations, store: Transfers, admission: AdmissionLimit): HandlersOf<typeof TransactionService> {
  /** The fields every movement request shares, and the fingerprint of the whole request. */
  const move = <S extends DescMessage>(
    caller: string,
    schema: S,
    req: MessageShape<S> & MovementRequest,
    kind: NewMovement["kind"],
    accounts: { from?: string; to?: string },
    expiresInSeconds?: bigint,
  ) =>
    ops
      .move({
        caller,
        requestId: req.requestId,
        fingerprint: fingerprint(schema, req),
        kind,
        fromAccountId: accounts.from ?? "",
        toAccountId: accounts.to ?? "",
        amount: req.amount,
        description: req.description,
        metadata: req.metadata,
        transferId: req.transferId,
        expiresInSeconds,
      })
      .then(annotate);
  const createTransfer = (caller: string, req: CreateTransferRequest, signal: AbortSignal) =>
    admission.run(() => move(caller, CreateTransferRequestSchema, req, "transfer", { from: req.fromAccountId, to: req.toAccountId }), signal);
  return {
    async createTransfer(req, { signal, metadata }) {
      return { transfer: await createTransfer(callerOf(metadata), req, signal) };
    },
    async createDeposit(req, { signal, metadata }) {
      return { transfer: await admission.run(() => move(callerOf(metadata), CreateDepositRequestSchema, req, "deposit", { to: req.accountId }), signal) };
    },
    async createWithdrawal(req, { signal, metadata }) {
      return { transfer: await admission.run(() => move(callerOf(metadata), CreateWithdrawalRequestSchema, req, "withdrawal", { from: req.accountId }), signal) };
    },
    async authorizeTransfer(req, { signal, metadata }) {
      const accounts = { from: req.fromAccountId, to: req.toAccountId };
      return { transfer: await admission.run(() => move(callerOf(metadata), AuthorizeTransferRequestSchema, req, "authorization", accounts, req.expiresInSeconds), signal) };
    },
    async captureTransfer(req, { signal, metadata }) {
      const transfer = await admission.run(() => ops.capture(callerOf(metadata), req.requestId, fingerprint(CaptureTransferRequestSchema, req), req.transferId, req.amount), signal);
      return { transfer: annotate(transfer) };
    },
    async voidTransfer(req, { signal, metadata }) {
      const transfer = await admission.run(() => ops.void(callerOf(metadata), req.requestId, fingerprint(VoidTransferRequestSchema, req), req.transferId, req.reason), signal);
      return { transfer: annotate(transfer) };
    },
    async reverseTransfer(req, { signal, metadata }) {
      const caller = callerOf(metadata);
      const [reversal, original] = await admission.run(() => ops.reverse(caller, req.requestId, fingerprint(ReverseTransferRequestSchema, req), req.transferId, req.amount, req.reason), signal);
      return { reversal: annotate(reversal), original };
    },
    async getTransfer(req) {
      return { transfer: transferMessage(await store.get(req.transferId)) };
    },
    async listTransfers(req) {
      const statuses = req.statuses.map(statusName);
      requireTimestamp(req.created?.startTime, "created.start_time");
      requireTimestamp(req.created?.endTime, "created.end_time");
      const range = {
        start: req.created?.startTime ? timestampDate(req.created.startTime) : undefined,
        end: req.created?.endTime ? timestampDate(req.created.endTime) : undefined,
      };
      const page = await store.list(req.accountId, statuses, range, req.pageSize, req.pageToken);
      return { transfers: page.items.map(transferMessage), nextPageToken: page.nextPageToken };
    },
    async batchCreateTransfers(req, { signal, metadata }) {
      const caller = callerOf(metadata);
      if (req.transfers.length === 0) throw new DomainError(ErrorReason.BATCH_EMPTY, "transfers must not be empty", "transfers");
      if (req.transfers.length > MAX_BATCH) throw new DomainError(ErrorReason.BATCH_TOO_LARGE, `at most ${MAX_BATCH} transfers per batch`, "transfers");
      // Every item at once, each its own request (own key, own result, its own place in admission): their
      // records, calls to risk and the ledger, and changes go together in a few shared statements and calls.
      const result = (index: number) =>
        createTransfer(caller, req.transfers[index], signal).then(
          (transfer) => ({ index, transfer }),
          (err: unknown) => {
            // An unexpected failure is that item's result: the others have executed and stand.
            const known = err instanceof DomainError ? err : new DomainError(ErrorReason.INTERNAL, "internal error");
            return { index, errorReason: known.reason, errorMessage: `${known.field ? `${known.field}: ` : ""}${known.message}` };
          },
        );
      const results: ReturnType<typeof result>[] = [];
      for (let index = 0; index < req.transfers.length; index++) {
        // Started a slice at a time: a long run of starts would hold back the timers and answers of calls already out.
        if (index > 0 && index % BATCH_SLICE === 0) await setImmediate();
        results.push(result(index));
      }
      return { results: await Promise.all(results) };
    },
  };
}

/** The movement on the caller's span: which transfer, between which accounts, how much, and where it ended. */
function annotate(transfer: Transfer): Transfer {
  trace.getActiveSpan()?.setAttributes({
    "tally.transfer.id": transfer.id,
    "tally.transfer.kind": TransferKind[transfer.kind] ?? String(transfer.kind),
    "tally.transfer.status": TransferStatus[transfer.status] ?? String(transfer.status),
    "tally.account.from_id": transfer.fromAccountId,
    "tally.account.to_id": transfer.toAccountId,
    "tally.amount": String(transfer.amount?.amount ?? 0n),
    "tally.currency": transfer.amount?.currency ?? "",
  });
  return transfer;
}

function statusName(status: TransferStatus): TransferStatusName {
  const name = (Object.entries(STATUS) as [TransferStatusName, TransferStatus][]).find(([, value]) => value === status)?.[0];
  if (!name) throw new DomainError(ErrorReason.INVALID_FIELD, `unknown status ${status}`, "statuses");
  return name;
}

