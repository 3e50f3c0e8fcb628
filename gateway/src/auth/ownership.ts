import { LRUCache } from "lru-cache";
import { ErrorReason } from "../../../platform/errors";
import { RemoteError } from "../../../platform/grpc/status";
import type { Backends } from "../backends";

interface TransferParties {
  from: string;
  to: string;
}

// A missing resource is not cached: a client may still create it under that id.
const missing = (err: unknown, reason: ErrorReason) => {
  if (err instanceof RemoteError && err.reason === reason) return undefined;
  throw err;
};

/**
 * Who owns what, as the services say. An account's customer and a transfer's
 * accounts never change, so answers are cached (bounded) and most ownership
 * checks cost no call.
 */
export class OwnershipDirectory {
  private readonly accountOwners = new LRUCache<string, string>({ max: 100_000 });
  private readonly transferParties = new LRUCache<string, TransferParties>({ max: 100_000 });

  constructor(private readonly backends: Pick<Backends, "account" | "transactions">) {}

  /** The customer id of an account ("" for Tally's own accounts); undefined when there is no such account. */
  async accountOwner(accountId: string, deadline?: Date): Promise<string | undefined> {
    const known = this.accountOwners.get(accountId);
    if (known !== undefined) return known;
    const owner = await this.backends.account.getAccount({ accountId }, { deadline }).then(
      ({ account }) => account?.customerId ?? "",
      (err: unknown) => missing(err, ErrorReason.ACCOUNT_NOT_FOUND),
    );
    if (owner !== undefined) this.accountOwners.set(accountId, owner);
    return owner;
  }

  /** The two accounts a transfer moves money between; undefined when there is no such transfer. */
  async transfer(transferId: string, deadline?: Date): Promise<TransferParties | undefined> {
    const known = this.transferParties.get(transferId);
    if (known) return known;
    const parties = await this.backends.transactions.getTransfer({ transferId }, { deadline }).then(
      ({ transfer }) => ({ from: transfer?.fromAccountId ?? "", to: transfer?.toAccountId ?? "" }),
      (err: unknown) => missing(err, ErrorReason.TRANSFER_NOT_FOUND),
    );
    if (parties) this.transferParties.set(transferId, parties);
    return parties;
  }
}
