import { create } from "@bufbuild/protobuf";
import { inArray } from "drizzle-orm";
import type { AccountService } from "../../../../gen/tally/account/v1/account_service_pb";
import { AccountFactsSchema, TransferFactsSchema, type AccountFacts, type TransferFacts } from "../../../../gen/tally/risk/v1/risk_pb";
import { TransferKind, type Transfer } from "../../../../gen/tally/transactions/v1/transfer_pb";
import { ErrorReason } from "../../../../platform/errors";
import type { ClientOf } from "../../../../platform/grpc/client";
import { RemoteError } from "../../../../platform/grpc/status";
import type { Logger } from "../../../../platform/logger";
import { accounts, type AccountViewRow } from "../db/schema";
import type { RiskDb } from "../db/types";
import { accountViewOf } from "./account-view";

type AccountClient = ClientOf<typeof AccountService>;

const KIND: Record<TransferKind, string> = {
  [TransferKind.UNSPECIFIED]: "unspecified",
  [TransferKind.TRANSFER]: "transfer",
  [TransferKind.DEPOSIT]: "deposit",
  [TransferKind.WITHDRAWAL]: "withdrawal",
  [TransferKind.AUTHORIZATION]: "authorization",
  [TransferKind.REVERSAL]: "reversal",
};

const DAY = 24 * 3600 * 1000;

/** Whole days from `from` to `now`, never negative. */
export const ageInDays = (from: Date, now: Date): bigint => BigInt(Math.max(0, Math.floor((now.getTime() - from.getTime()) / DAY)));

/** What rules know of an account from risk's view of it (unknown when there is none). */
export function accountFacts(accountId: string, view: AccountViewRow | undefined, now: Date): AccountFacts {
  if (!view) return create(AccountFactsSchema, { id: accountId, known: false });
  return create(AccountFactsSchema, {
    id: view.id,
    customerId: view.customerId,
    kind: view.kind,
    status: view.status,
    ageDays: ageInDays(view.openedAt, now),
    metadata: view.metadata,
    known: true,
  });
}

export function transferFacts(transfer: Transfer): TransferFacts {
  return create(TransferFactsSchema, {
    id: transfer.id,
    kind: KIND[transfer.kind] ?? "unspecified",
    amount: transfer.amount?.amount ?? 0n,
    currency: transfer.amount?.currency ?? "",
    fromAccountId: transfer.fromAccountId,
    toAccountId: transfer.toAccountId,
    metadata: transfer.metadata,
  });
}

/**
 * What rules know of an account: risk's own view (learnt from events) first;
 * an account not seen yet is asked of the account service, and remembered.
 */
export class AccountFactsSource {
  constructor(
    private readonly db: RiskDb,
    private readonly accountService: Pick<AccountClient, "getAccount">,
    private readonly log: Logger,
    private readonly lookupTimeoutMs: number,
  ) {}

  /** The facts of several accounts, in the order asked: one query, and the account service for any not seen yet. */
  async facts(accountIds: string[], deadline: Date | undefined, now = new Date()): Promise<AccountFacts[]> {
    const rows = await this.db.select().from(accounts).where(inArray(accounts.id, accountIds));
    const views = await Promise.all(accountIds.map(async (id) => rows.find((r) => r.id === id) ?? (await this.fetch(id, deadline))));
    return views.map((view, i) => this.factsOf(accountIds[i], view, now));
  }

  private factsOf(accountId: string, view: AccountViewRow | undefined, now: Date): AccountFacts {
    return accountFacts(accountId, view, now);
  }

  private async fetch(accountId: string, deadline: Date | undefined): Promise<AccountViewRow | undefined> {
    try {
      // A short budget: without an answer in time the account is judged unknown, not the whole call failed.
      const budget = new Date(Date.now() + this.lookupTimeoutMs);
      const { account } = await this.accountService.getAccount({ accountId }, { deadline: deadline && deadline < budget ? deadline : budget });
      if (!account) return undefined;
      const view = accountViewOf(account);
      await this.db.insert(accounts).values(view).onConflictDoNothing();
      return view;
    } catch (err) {
      if (err instanceof RemoteError && err.reason === ErrorReason.ACCOUNT_NOT_FOUND) return undefined;
      // Without the account service, rules see the account as unknown rather than failing the assessment.
      this.log.warn({ err: err instanceof Error ? err.message : String(err), accountId }, "account facts unavailable");
      return undefined;
    }
  }
}
