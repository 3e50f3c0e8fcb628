import { status as Status } from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Account, Balance } from "../../../gen/tally/account/v1/account_pb";
import { PostingMode, PostingResult, type LedgerTransferSchema } from "../../../gen/tally/account/v1/ledger_pb";
import { newId } from "../../../platform/ids";
import { RemoteError } from "../../../platform/grpc/status";
import type { AccountHarness } from "./harness";

export type TransferInit = Omit<MessageInitShape<typeof LedgerTransferSchema>, "$typeName">;

/** What the ledger helpers need: the clients, so other services' tests can use them too. */
export type LedgerClients = Pick<AccountHarness, "accounts" | "ledger">;

let customers = 0;

export async function openAccount(h: LedgerClients, init: { currency?: string; overdraftLimit?: bigint; customerId?: string; metadata?: Record<string, string> } = {}): Promise<Account> {
  const { account } = await h.accounts.createAccount({
    requestId: newId(),
    customerId: init.customerId ?? `customer-${++customers}`,
    currency: init.currency ?? "USD",
    overdraftLimit: init.overdraftLimit ?? 0n,
    metadata: init.metadata,
  });
  return account!;
}

/** The largest metadata an account may hold: 32 keys of 64 characters and values of 512, each 3 bytes in UTF-8 (about 55 KB). */
export const largestMetadata = (): Record<string, string> =>
  Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`${String(i).padStart(2, "0")}${"€".repeat(62)}`, "€".repeat(512)]));

export const transfer = (debitAccountId: string, creditAccountId: string, amount: bigint, extra: TransferInit = {}): TransferInit => ({
  id: newId(),
  debitAccountId,
  creditAccountId,
  amount,
  currency: "USD",
  mode: PostingMode.POST,
  ...extra,
});

export async function post(h: LedgerClients, ...items: TransferInit[]) {
  const { results } = await h.ledger.postTransfers({ transfers: items });
  return results;
}

export async function settlement(h: LedgerClients, currency = "USD"): Promise<string> {
  return (await h.accounts.getSystemAccount({ currency })).account!.id;
}

/** Money in from the settlement account. */
export async function fund(h: LedgerClients, accountId: string, amount: bigint, currency = "USD"): Promise<void> {
  const [result] = await post(h, transfer(await settlement(h, currency), accountId, amount, { currency }));
  expect(result.result).toBe(PostingResult.OK);
}

export async function balanceOf(h: LedgerClients, accountId: string): Promise<Balance> {
  return (await h.accounts.getBalance({ accountId })).balance!;
}

/** Awaits a call expected to fail, and checks its status code, reason and the field at fault. */
export async function expectRpcError(call: Promise<unknown>, code: Status, reason: string, field?: string): Promise<RemoteError> {
  const err = await call.then(
    () => {
      throw new Error(`expected ${reason}, but the call succeeded`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RemoteError);
  const remote = err as RemoteError;
  expect({ code: remote.code, reason: remote.reasonName }).toEqual({ code, reason });
  if (field !== undefined) expect(remote.field).toBe(field);
  return remote;
}

/** Counts and sums of everything the ledger stores: equal before and after means nothing changed. */
export async function ledgerSnapshot(h: Pick<AccountHarness, "db">): Promise<Record<string, string>> {
  const postgres = (await import("postgres")).default;
  const sql = postgres(h.db.url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`
      select (select count(*) from account.entries)::text as entries,
             (select count(*) from account.ledger_transfers)::text as transfers,
             (select count(*) from account.outbox)::text as events,
             (select coalesce(sum(debits_posted + 2 * credits_posted + 3 * debits_pending + 5 * credits_pending + version), 0) from account.accounts)::text as balances,
             (select string_agg(status, ',' order by id) from account.accounts)::text as statuses`;
    return { ...row };
  } finally {
    await sql.end();
  }
}

/** Runs SQL against the service's database (for checks, and for tampering tests). */
export async function withSql<T>(h: Pick<AccountHarness, "db">, run: (sql: import("postgres").Sql) => Promise<T>): Promise<T> {
  const postgres = (await import("postgres")).default;
  const sql = postgres(h.db.url, { max: 1, onnotice: () => {}, types: { bigint: postgres.BigInt } });
  try {
    return await run(sql);
  } finally {
    await sql.end();
  }
}
