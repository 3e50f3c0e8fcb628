import type { AccountService } from "../../../../gen/tally/account/v1/account_service_pb";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import type { ClientOf } from "../../../../platform/grpc/client";
import { RemoteError } from "../../../../platform/grpc/status";

const MAX_CACHED = 100_000;

/**
 * Whether an account exists and in which currency: asked of the account
 * service once per account and remembered (neither ever changes), so a request
 * naming an unknown account or the wrong currency is refused before anything
 * is recorded. Whether it is frozen or closed is the ledger's to say, at posting.
 */
export class AccountDirectory {
  private readonly currencies = new Map<string, string>();

  constructor(private readonly accounts: Pick<ClientOf<typeof AccountService>, "getAccount">) {}

  async requireAccount(accountId: string, currency: string, field: string): Promise<void> {
    let known = this.currencies.get(accountId);
    if (known === undefined) {
      try {
        const { account } = await this.accounts.getAccount({ accountId });
        known = account!.currency;
      } catch (err) {
        if (err instanceof RemoteError && err.reason === ErrorReason.ACCOUNT_NOT_FOUND) {
          throw new DomainError(ErrorReason.ACCOUNT_NOT_FOUND, `account ${accountId} not found`, field);
        }
        throw err;
      }
      if (this.currencies.size >= MAX_CACHED) this.currencies.clear();
      this.currencies.set(accountId, known);
    }
    if (known !== currency) {
      throw new DomainError(ErrorReason.CURRENCY_MISMATCH, `account ${accountId} holds ${known}, not ${currency}`, "amount.currency");
    }
  }
}
