import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ErrorReason } from "../../../gen/tally/common/v1/errors_pb";
import {
  RiskOutcomeSchema,
  TransferKind,
  TransferSchema,
  TransferStatus,
  type RiskOutcome,
  type Transfer,
} from "../../../gen/tally/transactions/v1/transfer_pb";
import { reasonFromName } from "../../../platform/errors";
import type { TransferKindName, TransferRow, TransferStatusName } from "./db/schema";

/** Conversions between the transactions service's rows and the shared Protobuf model. */

export const KIND: Record<TransferKindName, TransferKind> = {
  transfer: TransferKind.TRANSFER,
  deposit: TransferKind.DEPOSIT,
  withdrawal: TransferKind.WITHDRAWAL,
  authorization: TransferKind.AUTHORIZATION,
  reversal: TransferKind.REVERSAL,
};

export const STATUS: Record<TransferStatusName, TransferStatus> = {
  created: TransferStatus.CREATED,
  held: TransferStatus.HELD,
  posted: TransferStatus.POSTED,
  declined: TransferStatus.DECLINED,
  failed: TransferStatus.FAILED,
  voided: TransferStatus.VOIDED,
  expired: TransferStatus.EXPIRED,
  reversed: TransferStatus.REVERSED,
};

export const riskOutcomeJson = (outcome: RiskOutcome): JsonValue => toJson(RiskOutcomeSchema, outcome);
export const riskOutcomeOf = (row: TransferRow): RiskOutcome | undefined =>
  row.risk ? fromJson(RiskOutcomeSchema, row.risk as JsonValue) : undefined;

export function transferMessage(row: TransferRow): Transfer {
  return create(TransferSchema, {
    id: row.id,
    requestId: row.requestId,
    kind: KIND[row.kind],
    status: STATUS[row.status],
    fromAccountId: row.fromAccountId,
    toAccountId: row.toAccountId,
    amount: { amount: row.amount, currency: row.currency },
    capturedAmount: row.capturedAmount,
    reversedAmount: row.reversedAmount,
    reversesTransferId: row.reversesTransferId ?? "",
    holdExpiresAt: row.holdExpiresAt ? timestampFromDate(row.holdExpiresAt) : undefined,
    description: row.description,
    metadata: row.metadata,
    risk: riskOutcomeOf(row),
    failureReason: row.failureReason ? reasonFromName(row.failureReason) : ErrorReason.UNSPECIFIED,
    failureMessage: row.failureMessage,
    createdAt: timestampFromDate(row.createdAt),
    updatedAt: timestampFromDate(row.updatedAt),
    postedAt: row.postedAt ? timestampFromDate(row.postedAt) : undefined,
  });
}
