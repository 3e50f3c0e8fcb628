import { status as Status } from "@grpc/grpc-js";
import { AccountKind, AccountStatus } from "../../../gen/tally/account/v1/account_pb";
import { EntryLayer, PostingMode } from "../../../gen/tally/account/v1/ledger_pb";
import { newId } from "../../../platform/ids";
import { asCaller } from "../../../test/support/caller";
import { balanceOf, expectRpcError, fund, ledgerSnapshot, openAccount, post, settlement, transfer } from "./fixtures";
import { startAccountHarness, type AccountHarness } from "./harness";

let h: AccountHarness;

beforeAll(async () => {
  h = await startAccountHarness();
});
afterAll(() => h.stop());

describe("CreateAccount", () => {
  it("opens an active customer account with zero balances", async () => {
    const { account } = await h.accounts.createAccount({ requestId: newId(), customerId: "alice", currency: "EUR", overdraftLimit: 500n, metadata: { tier: "gold" } });
    expect(account).toMatchObject({ customerId: "alice", currency: "EUR", kind: AccountKind.CUSTOMER, status: AccountStatus.ACTIVE, overdraftLimit: 500n, version: 1n, metadata: { tier: "gold" } });
    expect(account!.balance).toMatchObject({ posted: 0n, available: 0n, debitsPending: 0n });
    expect((await h.accounts.getAccount({ accountId: account!.id })).account).toEqual(account);
  });

  it("is idempotent by request id, also when the replays race", async () => {
    const request = { requestId: newId(), customerId: "bob", currency: "USD" };
    const replies = await Promise.all(Array.from({ length: 10 }, () => h.accounts.createAccount(request)));
    expect(new Set(replies.map((r) => r.account!.id)).size).toBe(1);
    const { accounts } = await h.accounts.listAccounts({ customerId: "bob" });
    expect(accounts).toHaveLength(1);
  });

  it("refuses a request id reused for a different account", async () => {
    const requestId = newId();
    await h.accounts.createAccount({ requestId, customerId: "carol", currency: "USD" });
    await expectRpcError(h.accounts.createAccount({ requestId, customerId: "carol", currency: "GBP" }), Status.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED", "request_id");
    await expectRpcError(h.accounts.createAccount({ requestId, customerId: "carol", currency: "USD", metadata: { x: "y" } }), Status.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED", "request_id");
  });

  it("keeps each caller's request ids apart: the same id from two callers opens two accounts", async () => {
    const request = { requestId: `open-${newId()}`, customerId: "erin", currency: "USD" };
    const [teller, other] = await Promise.all([h.accounts.createAccount(request, asCaller("teller-1")), h.accounts.createAccount(request, asCaller("teller-2"))]);
    expect(teller.account!.id).not.toBe(other.account!.id);
    expect((await h.accounts.createAccount(request, asCaller("teller-1"))).account).toEqual(teller.account);
  });

  it("refuses a client-chosen id that is taken", async () => {
    const accountId = newId();
    await h.accounts.createAccount({ requestId: newId(), customerId: "dave", currency: "USD", accountId });
    await expectRpcError(h.accounts.createAccount({ requestId: newId(), customerId: "dave", currency: "USD", accountId }), Status.ALREADY_EXISTS, "EXISTS_WITH_DIFFERENT_FIELDS", "account_id");
  });

  const bad: [string, object, string, string][] = [
    ["no request id", { requestId: "" }, "MISSING_FIELD", "request_id"],
    ["no customer", { customerId: "" }, "MISSING_FIELD", "customer_id"],
    ["customer id with spaces", { customerId: "a b" }, "INVALID_FIELD", "customer_id"],
    ["unknown currency", { currency: "ABC" }, "UNKNOWN_CURRENCY", "currency"],
    ["lower-case currency", { currency: "usd" }, "UNKNOWN_CURRENCY", "currency"],
    ["negative overdraft limit", { overdraftLimit: -1n }, "AMOUNT_OUT_OF_RANGE", "overdraft_limit"],
    ["malformed account id", { accountId: "123" }, "INVALID_ID", "account_id"],
    ["too much metadata", { metadata: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "v"])) }, "INVALID_FIELD", "metadata"],
    ["a NUL in metadata, which PostgreSQL cannot store", { metadata: { note: "a\u0000b" } }, "INVALID_FIELD", "metadata.note"],
  ];
  it.each(bad)("refuses %s with a reason and the field, changing nothing", async (_name, change, reason, field) => {
    const before = await ledgerSnapshot(h);
    const request = { requestId: newId(), customerId: "erin", currency: "USD", ...change };
    await expectRpcError(h.accounts.createAccount(request), Status.INVALID_ARGUMENT, reason, field);
    expect(await ledgerSnapshot(h)).toEqual(before);
  });
});

describe("GetAccount and ListAccounts", () => {
  it("answers NOT_FOUND for an unknown account and INVALID_ARGUMENT for a malformed id", async () => {
    await expectRpcError(h.accounts.getAccount({ accountId: newId() }), Status.NOT_FOUND, "ACCOUNT_NOT_FOUND", "account_id");
    await expectRpcError(h.accounts.getAccount({ accountId: "nope" }), Status.INVALID_ARGUMENT, "INVALID_ID", "account_id");
  });

  it("pages a customer's accounts oldest first with keyset tokens", async () => {
    const opened = [];
    for (let i = 0; i < 5; i++) opened.push((await openAccount(h, { customerId: "frank" })).id);
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await h.accounts.listAccounts({ customerId: "frank", pageSize: 2, pageToken });
      seen.push(...page.accounts.map((a) => a.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "");
    expect(seen).toEqual(opened);
    expect(pages).toBe(3);
  });

  it("refuses a forged page token and a negative page size", async () => {
    await expectRpcError(h.accounts.listAccounts({ customerId: "frank", pageToken: "garbage" }), Status.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN", "page_token");
    const forged = Buffer.from(JSON.stringify({ after: "x' or 1=1" })).toString("base64url");
    await expectRpcError(h.accounts.listAccounts({ customerId: "frank", pageToken: forged }), Status.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN", "page_token");
    const beyond = Buffer.from(JSON.stringify({ before: "9999999999999999999" })).toString("base64url");
    await expectRpcError(h.accounts.listEntries({ accountId: (await openAccount(h)).id, pageToken: beyond }), Status.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN", "page_token");
    await expectRpcError(h.accounts.listAccounts({ customerId: "frank", pageSize: -1 }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "page_size");
  });
});

describe("LookupAccounts", () => {
  it("answers the accounts that exist among the ids, leaving out unknown and malformed ones", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h, { currency: "EUR" })];
    const { accounts } = await h.accounts.lookupAccounts({ accountIds: [a.id, newId(), "not-an-id", b.id.toUpperCase(), a.id] });
    expect(accounts.map((x) => [x.id, x.currency]).sort()).toEqual([[a.id, a.currency], [b.id, "EUR"]].sort());
    expect((await h.accounts.lookupAccounts({ accountIds: [] })).accounts).toEqual([]);
  });

  it("refuses more than 1,000 ids", async () => {
    const ids = Array.from({ length: 1001 }, () => newId());
    await expectRpcError(h.accounts.lookupAccounts({ accountIds: ids }), Status.INVALID_ARGUMENT, "BATCH_TOO_LARGE", "account_ids");
  });
});

describe("status changes", () => {
  it("freezes and unfreezes, idempotently, with the reason kept", async () => {
    const a = await openAccount(h);
    const frozen = (await h.accounts.freezeAccount({ accountId: a.id, reason: "suspicious login" })).account!;
    expect([frozen.status, frozen.statusReason, frozen.version]).toEqual([AccountStatus.FROZEN, "suspicious login", 2n]);
    const again = (await h.accounts.freezeAccount({ accountId: a.id, reason: "again" })).account!;
    expect([again.status, again.version]).toEqual([AccountStatus.FROZEN, 2n]);
    const active = (await h.accounts.unfreezeAccount({ accountId: a.id, reason: "cleared" })).account!;
    expect([active.status, active.version]).toEqual([AccountStatus.ACTIVE, 3n]);
  });

  it("closes only at zero balance with no open hold, and a closed account stays closed", async () => {
    const a = await openAccount(h);
    const b = await openAccount(h);
    await fund(h, a.id, 100n);
    await expectRpcError(h.accounts.closeAccount({ accountId: a.id }), Status.FAILED_PRECONDITION, "ACCOUNT_BALANCE_NOT_ZERO", "account_id");
    const hold = transfer(a.id, b.id, 100n, { mode: PostingMode.PENDING });
    await post(h, hold);
    // b holds nothing posted, but a hold is on its way in.
    await expectRpcError(h.accounts.closeAccount({ accountId: b.id }), Status.FAILED_PRECONDITION, "ACCOUNT_BALANCE_NOT_ZERO", "account_id");
    await post(h, { id: newId(), pendingId: hold.id, mode: PostingMode.VOID_PENDING });
    const closed = (await h.accounts.closeAccount({ accountId: b.id, reason: "customer left" })).account!;
    expect(closed.status).toBe(AccountStatus.CLOSED);
    expect((await h.accounts.closeAccount({ accountId: b.id })).account!.status).toBe(AccountStatus.CLOSED);
    await expectRpcError(h.accounts.unfreezeAccount({ accountId: b.id }), Status.FAILED_PRECONDITION, "ACCOUNT_CLOSED", "account_id");
    await expectRpcError(h.accounts.freezeAccount({ accountId: b.id }), Status.FAILED_PRECONDITION, "ACCOUNT_CLOSED", "account_id");
    // Emptied back to the bank, a can close too.
    await post(h, transfer(a.id, await settlement(h), 100n));
    expect((await h.accounts.closeAccount({ accountId: a.id })).account!.status).toBe(AccountStatus.CLOSED);
  });

  it("refuses a reason PostgreSQL cannot store, changing nothing", async () => {
    const a = await openAccount(h);
    const before = await ledgerSnapshot(h);
    await expectRpcError(h.accounts.freezeAccount({ accountId: a.id, reason: "\u0000" }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "reason");
    await expectRpcError(h.accounts.freezeAccount({ accountId: a.id, reason: "x".repeat(513) }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "reason");
    expect(await ledgerSnapshot(h)).toEqual(before);
  });

  it("refuses to freeze or close a system account", async () => {
    await expectRpcError(h.accounts.freezeAccount({ accountId: await settlement(h) }), Status.FAILED_PRECONDITION, "SYSTEM_ACCOUNT_IMMUTABLE", "account_id");
  });
});

describe("balances and statements", () => {
  it("shows posted, pending and available balances", async () => {
    const a = await openAccount(h, { overdraftLimit: 50n });
    const b = await openAccount(h);
    await fund(h, a.id, 1_000n);
    await post(h, transfer(a.id, b.id, 300n), transfer(a.id, b.id, 200n, { mode: PostingMode.PENDING }));
    expect(await balanceOf(h, a.id)).toMatchObject({ creditsPosted: 1_000n, debitsPosted: 300n, debitsPending: 200n, posted: 700n, available: 500n, overdraftLimit: 50n });
    expect(await balanceOf(h, b.id)).toMatchObject({ creditsPosted: 300n, creditsPending: 200n, posted: 300n, available: 300n });
  });

  it("pages a statement newest first, each entry with the balance after it", async () => {
    const a = await openAccount(h);
    const b = await openAccount(h);
    await fund(h, a.id, 10_000n);
    for (let i = 1; i <= 7; i++) await post(h, transfer(a.id, b.id, BigInt(i)));
    await post(h, transfer(a.id, b.id, 5n, { mode: PostingMode.PENDING }));
    const entries = [];
    let pageToken = "";
    do {
      const page = await h.accounts.listEntries({ accountId: a.id, pageSize: 3, pageToken });
      entries.push(...page.entries);
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(entries).toHaveLength(9);
    const sequences = entries.map((e) => e.sequence);
    expect([...sequences].sort((x, y) => (x < y ? 1 : -1))).toEqual(sequences);
    expect(entries[0]).toMatchObject({ layer: EntryLayer.PENDING, amount: 5n, postedBalanceAfter: 9_972n, availableBalanceAfter: 9_967n });
    expect(entries.slice(1).map((e) => e.postedBalanceAfter)).toEqual([9_972n, 9_979n, 9_985n, 9_990n, 9_994n, 9_997n, 9_999n, 10_000n]);
    const posted = await h.accounts.listEntries({ accountId: a.id, layer: EntryLayer.POSTED });
    expect(posted.entries).toHaveLength(8);
    await expectRpcError(h.accounts.listEntries({ accountId: a.id, layer: 9 as EntryLayer }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "layer");
    await expectRpcError(h.accounts.listEntries({ accountId: newId() }), Status.NOT_FOUND, "ACCOUNT_NOT_FOUND", "account_id");
  });

  it("has one settlement account per currency", async () => {
    const usd = (await h.accounts.getSystemAccount({ currency: "USD" })).account!;
    const jpy = (await h.accounts.getSystemAccount({ currency: "JPY" })).account!;
    expect([usd.kind, usd.currency, jpy.currency]).toEqual([AccountKind.SETTLEMENT, "USD", "JPY"]);
    await expectRpcError(h.accounts.getSystemAccount({ currency: "XXX" }), Status.INVALID_ARGUMENT, "UNKNOWN_CURRENCY", "currency");
  });
});
