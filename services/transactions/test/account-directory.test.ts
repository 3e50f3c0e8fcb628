import { create } from "@bufbuild/protobuf";
import { AccountSchema } from "../../../gen/tally/account/v1/account_pb";
import { AccountService } from "../../../gen/tally/account/v1/account_service_pb";
import { reasonName } from "../../../platform/errors";
import { createServiceClient } from "../../../platform/grpc/client";
import { eventually } from "../../../test/support/events";
import { startServiceDouble } from "../../../test/support/service-double";
import { newId } from "../../../platform/ids";
import { ACCOUNTS_PER_LOOKUP } from "../../../platform/validation";
import { DomainError } from "../../../platform/errors";
import { AccountDirectory } from "../src/domain/account-directory";
import { largestMetadata, openAccount } from "./fixtures";
import { startTransactionsHarness, type TransactionsHarness } from "./harness";

/** The account directory against the real account service, through a client that records the ids of each LookupAccounts call. */
let h: TransactionsHarness;
const calls: string[][] = [];
let directory: AccountDirectory;

beforeAll(async () => {
  h = await startTransactionsHarness({ withRisk: false, withTransactions: false });
  directory = new AccountDirectory({
    lookupAccounts: (request, options) => {
      calls.push([...(request.accountIds ?? [])]);
      return h.accounts.lookupAccounts(request, options);
    },
  });
});
afterAll(() => h.stop());
beforeEach(() => (calls.length = 0));

const refusal = (p: Promise<unknown>) => p.then(() => undefined, (err: DomainError) => [reasonName(err.reason), err.field]);

it("looks up the accounts of a request together, in one call, and then remembers them", async () => {
  const [a, b] = [await openAccount(h), await openAccount(h)];
  const accounts = [{ id: a.id, field: "from_account_id" }, { id: b.id, field: "to_account_id" }];
  await directory.requireAccounts(accounts, "USD");
  expect(calls).toEqual([[a.id, b.id]]);
  await directory.requireAccounts(accounts, "USD");
  expect(calls).toHaveLength(1);
});

it("asks once about an account that concurrent requests name, and refuses an unknown account or the wrong currency by field", async () => {
  const [a, b, euros] = [await openAccount(h), await openAccount(h), await openAccount(h, { currency: "EUR" })];
  const unknown = newId();
  const outcomes = await Promise.all([
    refusal(directory.requireAccounts([{ id: a.id, field: "from_account_id" }, { id: b.id, field: "to_account_id" }], "USD")),
    refusal(directory.requireAccounts([{ id: b.id, field: "from_account_id" }, { id: unknown, field: "to_account_id" }], "USD")),
    refusal(directory.requireAccounts([{ id: a.id, field: "from_account_id" }, { id: euros.id, field: "to_account_id" }], "USD")),
  ]);
  expect(outcomes).toEqual([undefined, ["ACCOUNT_NOT_FOUND", "to_account_id"], ["CURRENCY_MISMATCH", "amount.currency"]]);
  // The first request's accounts went at once; the others' new accounts together in the next call, each account once.
  expect(calls).toEqual([[a.id, b.id], [unknown, euros.id]]);
});

it("asks for no more accounts in one call than a gRPC message may carry back, whatever their metadata", async () => {
  // 320 accounts of about 55 KB each: more than 16 MiB in one answer.
  const accounts: { id: string }[] = [];
  for (let i = 0; i < 8; i++) accounts.push(...(await Promise.all(Array.from({ length: 40 }, () => openAccount(h, { metadata: largestMetadata() })))));
  await Promise.all(accounts.map((a) => directory.requireAccounts([{ id: a.id, field: "to_account_id" }], "USD")));
  expect(calls.flat().sort()).toEqual(accounts.map((a) => a.id).sort());
  expect(Math.max(...calls.map((c) => c.length))).toBeLessThanOrEqual(ACCOUNTS_PER_LOOKUP);
}, 60_000);

it("a lookup a replica does not answer gives up its place: the requests behind it are answered", async () => {
  const held: (() => void)[] = [];
  const { server, target } = await startServiceDouble(AccountService, {
    lookupAccounts: async (request) => {
      if (held.length === 0) await new Promise<void>((resolve) => held.push(resolve));
      return { accounts: request.accountIds.map((id) => create(AccountSchema, { id, currency: "USD" })) };
    },
  });
  const client = createServiceClient(AccountService, target, { defaultTimeoutMs: 30_000 });
  try {
    const stuckDirectory = new AccountDirectory(client);
    let stuckAnswered = false;
    const stuck = stuckDirectory.requireAccounts([{ id: newId(), field: "from_account_id" }], "USD").then(() => (stuckAnswered = true));
    await eventually(async () => held.length === 1 || undefined, 5_000);
    await stuckDirectory.requireAccounts([{ id: newId(), field: "from_account_id" }], "USD");
    expect(stuckAnswered).toBe(false);
    held[0]();
    await stuck;
  } finally {
    held.forEach((answer) => answer());
    client.close();
    await server.stop(100);
  }
});
