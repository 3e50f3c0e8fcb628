import { timestampDate } from "@bufbuild/protobuf/wkt";
import { AccountKind, AccountStatus, type Account } from "../../../../gen/tally/account/v1/account_pb";
import type { AccountViewRow } from "../db/schema";

const KIND: Record<AccountKind, string> = {
  [AccountKind.UNSPECIFIED]: "unspecified",
  [AccountKind.CUSTOMER]: "customer",
  [AccountKind.SETTLEMENT]: "settlement",
};

const STATUS: Record<AccountStatus, string> = {
  [AccountStatus.UNSPECIFIED]: "unspecified",
  [AccountStatus.ACTIVE]: "active",
  [AccountStatus.FROZEN]: "frozen",
  [AccountStatus.CLOSED]: "closed",
};

/** The row of risk's account view for an account message (from an event or the account service). */
export function accountViewOf(account: Account): AccountViewRow {
  return {
    id: account.id,
    customerId: account.customerId,
    currency: account.currency,
    kind: KIND[account.kind] ?? "unspecified",
    status: STATUS[account.status] ?? "unspecified",
    metadata: account.metadata,
    openedAt: account.createdAt ? timestampDate(account.createdAt) : new Date(),
    updatedAt: account.updatedAt ? timestampDate(account.updatedAt) : new Date(),
    version: account.version,
  };
}
