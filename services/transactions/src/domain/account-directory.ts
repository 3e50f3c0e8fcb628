import type { AccountService } from "../../../../gen/tally/account/v1/account_service_pb";
import { CallBatcher } from "../../../../platform/call-batcher";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import type { ClientOf } from "../../../../platform/grpc/client";
import { ACCOUNTS_PER_LOOKUP } from "../../../../platform/validation";

const MAX_CACHED = 100_000;

/**
 * Whether an account exists and in which currency: asked of the account
 * service once per account and remembered (neither ever changes), so a request
 * naming an unknown account or the wrong currency is refused before anything
 * is recorded. Whether it is frozen or closed is the ledger's to say, at posting.
 * The accounts that concurrent requests ask about are looked up together, in
 * one call, and an account already being looked up is not asked for again.
 */
export class AccountDirectory {
  private readonly currencies = new Map<string, string>();
  private readonly asking = new Map<string, Promise<string | undefined>>();
  /** The currency of each account asked about, or undefined for one that does not exist. */
  private readonly lookups: CallBatcher<string, string | undefined>;

  constructor(accounts: Pick<ClientOf<typeof AccountService>, "lookupAccounts">) {
    const lookup = async (ids: string[]) => {
      const found = new Map((await accounts.lookupAccounts({ accountIds: ids })).accounts.map((a) => [a.id, a.currency]));
      return ids.map((id) => found.get(id));
    };
    // Every id asked about is well formed, so a call that fails is the service's failure, not an id's.
    // A call still out after half a second gives up its place: an account replica that hangs holds
    // only the requests in the call it was sent.
    this.lookups = new CallBatcher("AccountService/LookupAccounts", lookup, { concurrency: 1, maxItems: ACCOUNTS_PER_LOOKUP, retryAlone: () => false, freePlaceAfterMs: 500 });
  }

  /** Refuses the first of the accounts, in order, that does not exist or does not hold `currency`. */
  async requireAccounts(accounts: { id: string; field: string }[], currency: string): Promise<void> {
    const known = await this.currenciesOf(accounts.map((a) => a.id));
    accounts.forEach(({ id, field }, i) => {
      if (known[i] === undefined) throw new DomainError(ErrorReason.ACCOUNT_NOT_FOUND, `account ${id} not found`, field);
      if (known[i] !== currency) throw new DomainError(ErrorReason.CURRENCY_MISMATCH, `account ${id} holds ${known[i]}, not ${currency}`, "amount.currency");
    });
  }

  /** The accounts' currencies: those neither known nor being looked up are looked up together, in one call. */
  private currenciesOf(ids: string[]): Promise<(string | undefined)[]> {
    const missing = [...new Set(ids.filter((id) => !this.currencies.has(id) && !this.asking.has(id)))];
    if (missing.length > 0) {
      const found = this.lookups.submitMany(missing);
      missing.forEach((id, i) => {
        const asked = found
          .then((currencies) => {
            if (currencies[i] !== undefined) this.remember(id, currencies[i]);
            return currencies[i];
          })
          .finally(() => this.asking.delete(id));
        this.asking.set(id, asked);
      });
    }
    return Promise.all(ids.map((id) => this.currencies.get(id) ?? this.asking.get(id)));
  }

  private remember(accountId: string, currency: string): void {
    if (this.currencies.size >= MAX_CACHED) this.currencies.clear();
    this.currencies.set(accountId, currency);
  }
}
