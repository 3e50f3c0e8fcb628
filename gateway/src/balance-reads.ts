import { create } from "@bufbuild/protobuf";
import type { Account } from "../../gen/tally/account/v1/account_pb";
import { GetBalanceResponseSchema, type AccountService, type GetBalanceResponse } from "../../gen/tally/account/v1/account_service_pb";
import { CallBatcher } from "../../platform/call-batcher";
import { rejectAfter } from "../../platform/deadline";
import { DomainError, ErrorReason } from "../../platform/errors";
import type { ClientOf } from "../../platform/grpc/client";
import { ACCOUNTS_PER_LOOKUP, requireId } from "../../platform/validation";

const late = () => new DomainError(ErrorReason.DEADLINE_EXCEEDED, "the account service did not answer before the deadline");

interface Read {
  accountId: string;
  deadline: Date;
}

/**
 * GetBalance as the gateway serves it: the balance reads that arrive while
 * `callsInFlight` lookups are out go together in the next one, so a call, its
 * HTTP/2 stream and the service's statement are paid per group rather than per
 * read — most of a read's cost on both sides. A lone read goes at once. Each
 * read is answered from the account row as the lookup found it, after the
 * read arrived, and is refused as GetBalance refuses it. A lookup still out
 * after `placeMs` (a healthy one takes a few milliseconds) gives up its place,
 * so an account replica that hangs cannot hold every place (at most as many
 * again go out so).
 */
export class BalanceReads {
  private readonly lookups: CallBatcher<Read, Account | undefined>;

  constructor(account: Pick<ClientOf<typeof AccountService>, "lookupAccounts">, { callsInFlight, placeMs }: { callsInFlight: number; placeMs: number }) {
    this.lookups = new CallBatcher(
      "AccountService/LookupAccounts",
      async (reads) => {
        // The group waits for its most patient reader; one in a hurry gives up alone (read()).
        const deadline = new Date(Math.max(...reads.map((r) => r.deadline.getTime())));
        const { accounts } = await account.lookupAccounts({ accountIds: [...new Set(reads.map((r) => r.accountId))] }, { deadline });
        const byId = new Map(accounts.map((a) => [a.id, a]));
        return reads.map((r) => byId.get(r.accountId));
      },
      { concurrency: callsInFlight, maxItems: ACCOUNTS_PER_LOOKUP, retryAlone: () => false, freePlaceAfterMs: placeMs },
    );
  }

  async read(accountId: string, deadline: Date): Promise<GetBalanceResponse> {
    const id = requireId(accountId, "account_id");
    const account = await rejectAfter(this.lookups.submit({ accountId: id, deadline }), deadline.getTime() - Date.now(), late);
    if (!account) throw new DomainError(ErrorReason.ACCOUNT_NOT_FOUND, `account ${id} not found`, "account_id");
    return create(GetBalanceResponseSchema, { balance: account.balance });
  }
}
