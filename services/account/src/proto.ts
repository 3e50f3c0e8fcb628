import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccountKind, AccountSchema, AccountStatus, BalanceSchema, type Account, type Balance } from "../../../gen/tally/account/v1/account_pb";
import {
  EntryDirection,
  EntryLayer,
  EntrySchema,
  LedgerTransferSchema,
  LedgerTransferState,
  PostingMode,
  type Entry,
  type LedgerTransfer,
} from "../../../gen/tally/account/v1/ledger_pb";
import type { AccountRow, EntryRow } from "./db/schema";
import { availableBalance, postedBalance, type AccountState, type PostingModeName, type TransferRecord } from "./domain/model";

/** Conversions between the account service's rows and the shared Protobuf model. */

const KIND = { customer: AccountKind.CUSTOMER, settlement: AccountKind.SETTLEMENT } as const;
const STATUS = { active: AccountStatus.ACTIVE, frozen: AccountStatus.FROZEN, closed: AccountStatus.CLOSED } as const;

export const kindName = (kind: AccountKind): AccountRow["kind"] | undefined =>
  kind === AccountKind.CUSTOMER ? "customer" : kind === AccountKind.SETTLEMENT ? "settlement" : undefined;

export const statusOf = (status: AccountRow["status"]): AccountStatus => STATUS[status];

export function balanceMessage(a: AccountState): Balance {
  return create(BalanceSchema, {
    accountId: a.id,
    currency: a.currency,
    debitsPosted: a.debitsPosted,
    creditsPosted: a.creditsPosted,
    debitsPending: a.debitsPending,
    creditsPending: a.creditsPending,
    posted: postedBalance(a),
    available: availableBalance(a),
    overdraftLimit: a.overdraftLimit,
    version: a.version,
  });
}

export function accountMessage(row: AccountRow): Account {
  return create(AccountSchema, {
    id: row.id,
    customerId: row.customerId,
    currency: row.currency,
    kind: KIND[row.kind],
    status: STATUS[row.status],
    overdraftLimit: row.overdraftLimit,
    metadata: row.metadata,
    version: row.version,
    balance: balanceMessage(row),
    statusReason: row.statusReason,
    createdAt: timestampFromDate(row.createdAt),
    updatedAt: timestampFromDate(row.updatedAt),
  });
}

const MODE_BY_NAME = {
  post: PostingMode.POST,
  pending: PostingMode.PENDING,
  post_pending: PostingMode.POST_PENDING,
  void_pending: PostingMode.VOID_PENDING,
} as const;

export function modeName(mode: PostingMode): PostingModeName | undefined {
  const entry = Object.entries(MODE_BY_NAME).find(([, value]) => value === mode);
  return entry?.[0] as PostingModeName | undefined;
}

const STATE = {
  posted: LedgerTransferState.POSTED,
  pending: LedgerTransferState.PENDING,
  pending_posted: LedgerTransferState.PENDING_POSTED,
  pending_voided: LedgerTransferState.PENDING_VOIDED,
  pending_expired: LedgerTransferState.PENDING_EXPIRED,
  voided: LedgerTransferState.VOIDED,
} as const;

export function transferMessage(t: TransferRecord): LedgerTransfer {
  return create(LedgerTransferSchema, {
    id: t.id,
    debitAccountId: t.debitAccountId,
    creditAccountId: t.creditAccountId,
    amount: t.amount,
    currency: t.currency,
    mode: MODE_BY_NAME[t.mode],
    pendingId: t.pendingId ?? "",
    timeoutSeconds: t.timeoutSeconds,
    metadata: t.metadata,
    state: STATE[t.state],
    createdAt: timestampFromDate(t.createdAt),
    expiresAt: t.expiresAt ? timestampFromDate(t.expiresAt) : undefined,
    postedAmount: t.postedAmount,
  });
}

export function entryMessage(e: EntryRow): Entry {
  return create(EntrySchema, {
    sequence: e.sequence,
    accountId: e.accountId,
    transferId: e.transferId,
    direction: e.direction === "debit" ? EntryDirection.DEBIT : EntryDirection.CREDIT,
    layer: e.layer === "posted" ? EntryLayer.POSTED : EntryLayer.PENDING,
    amount: e.amount,
    currency: e.currency,
    postedBalanceAfter: e.postedBalanceAfter,
    availableBalanceAfter: e.availableBalanceAfter,
    counterpartyAccountId: e.counterpartyAccountId,
    createdAt: timestampFromDate(e.createdAt),
  });
}
