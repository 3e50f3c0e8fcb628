import { AccountKind } from "../../../../gen/tally/account/v1/account_pb";
import type { AccountService } from "../../../../gen/tally/account/v1/account_service_pb";
import { EntryLayer } from "../../../../gen/tally/account/v1/ledger_pb";
import { callerOf } from "../../../../platform/caller";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import type { HandlersOf } from "../../../../platform/grpc/server";
import type { Accounts } from "../domain/accounts";
import { accountMessage, balanceMessage, entryMessage, kindName } from "../proto";

/** The statement's layer filter; all layers when unspecified. */
function layerOf(layer: EntryLayer): "posted" | "pending" | undefined {
  switch (layer) {
    case EntryLayer.UNSPECIFIED:
      return undefined;
    case EntryLayer.POSTED:
      return "posted";
    case EntryLayer.PENDING:
      return "pending";
    default:
      throw new DomainError(ErrorReason.INVALID_FIELD, "layer must be POSTED, PENDING or unspecified", "layer");
  }
}

/** AccountService over gRPC: decode, call the domain, encode. */
export function accountHandlers(accounts: Accounts): HandlersOf<typeof AccountService> {
  return {
    async createAccount(req, { metadata }) {
      return { account: accountMessage(await accounts.create(req, callerOf(metadata))) };
    },
    async getAccount(req) {
      return { account: accountMessage(await accounts.get(req.accountId)) };
    },
    async lookupAccounts(req) {
      return { accounts: (await accounts.lookup(req.accountIds)).map(accountMessage) };
    },
    async listAccounts(req) {
      const page = await accounts.listByCustomer(req.customerId, req.pageSize, req.pageToken);
      return { accounts: page.items.map(accountMessage), nextPageToken: page.nextPageToken };
    },
    async freezeAccount(req) {
      return { account: accountMessage(await accounts.freeze(req.accountId, req.reason)) };
    },
    async unfreezeAccount(req) {
      return { account: accountMessage(await accounts.unfreeze(req.accountId, req.reason)) };
    },
    async closeAccount(req) {
      return { account: accountMessage(await accounts.close(req.accountId, req.reason)) };
    },
    async getBalance(req) {
      return { balance: balanceMessage(await accounts.get(req.accountId)) };
    },
    async listEntries(req) {
      const page = await accounts.listEntries(req.accountId, req.pageSize, req.pageToken, layerOf(req.layer));
      return { entries: page.items.map(entryMessage), nextPageToken: page.nextPageToken };
    },
    async getSystemAccount(req) {
      const kind = kindName(req.kind === AccountKind.UNSPECIFIED ? AccountKind.SETTLEMENT : req.kind);
      if (kind !== "settlement") throw new DomainError(ErrorReason.INVALID_FIELD, "kind must be a system account kind", "kind");
      return { account: accountMessage(await accounts.systemAccount(req.currency, kind)) };
    },
  };
}
