import { status as Status } from "@grpc/grpc-js";
import { LedgerTransferState, PostingMode, PostingResult } from "../../../gen/tally/account/v1/ledger_pb";
import { BreachKind } from "../../../gen/tally/account/v1/ledger_service_pb";
import { newId } from "../../../platform/ids";
import { INT64_MAX } from "../../../platform/money";
import { balanceOf, expectRpcError, fund, ledgerSnapshot, openAccount, post, settlement, transfer, withSql } from "./fixtures";
import { startAccountHarness, type AccountHarness } from "./harness";

let h: AccountHarness;

beforeAll(async () => {
  h = await startAccountHarness({ HOLD_EXPIRY_INTERVAL_MS: "100" });
});
afterAll(() => h.stop());

describe("posting", () => {
  it("moves money between two accounts with one debit and one credit entry", async () => {
    const a = await openAccount(h);
    const b = await openAccount(h);
    await fund(h, a.id, 10_000n);
    const [result] = await post(h, transfer(a.id, b.id, 2_500n));
    expect(result.result).toBe(PostingResult.OK);
    expect(result.transfer?.state).toBe(LedgerTransferState.POSTED);
    expect((await balanceOf(h, a.id)).available).toBe(7_500n);
    expect((await balanceOf(h, b.id)).posted).toBe(2_500n);
    const { entries } = await h.accounts.listEntries({ accountId: a.id });
    expect(entries.map((e) => [e.amount, e.postedBalanceAfter])).toEqual([
      [2_500n, 7_500n],
      [10_000n, 10_000n],
    ]);
  });

  it("lets a customer go below zero only as far as its overdraft limit", async () => {
    const a = await openAccount(h, { overdraftLimit: 1_000n });
    const b = await openAccount(h);
    const [ok, refused] = await post(h, transfer(a.id, b.id, 1_000n), transfer(a.id, b.id, 1n));
    expect(ok.result).toBe(PostingResult.OK);
    expect(refused.result).toBe(PostingResult.INSUFFICIENT_FUNDS);
    expect((await balanceOf(h, a.id)).available).toBe(-1_000n);
  });

  it("lets the settlement account go negative", async () => {
    const a = await openAccount(h);
    await fund(h, a.id, 5n);
    expect((await balanceOf(h, await settlement(h))).posted).toBeLessThan(0n);
  });
});

describe("idempotency per transfer id", () => {
  it("returns EXISTS with the original for the same fields, and refuses different fields", async () => {
    const a = await openAccount(h);
    const b = await openAccount(h);
    await fund(h, a.id, 1_000n);
    const t = transfer(a.id, b.id, 100n, { metadata: { order: "42" } });
    const [first] = await post(h, t);
    const before = await ledgerSnapshot(h);
    const [again] = await post(h, t);
    expect(again.result).toBe(PostingResult.EXISTS);
    expect(again.transfer).toEqual(first.transfer);
    const [different] = await post(h, { ...t, amount: 101n });
    expect(different.result).toBe(PostingResult.EXISTS_WITH_DIFFERENT_FIELDS);
    // Another request's transfer is not shown to whoever reused its id.
    expect(different.transfer).toBeUndefined();
    expect(await ledgerSnapshot(h)).toEqual(before);
    expect((await balanceOf(h, b.id)).posted).toBe(100n);
  });

  it("settles races on the same new ids between batches on different accounts, without errors", async () => {
    const [a, b, c, d] = await Promise.all([openAccount(h), openAccount(h), openAccount(h), openAccount(h)]);
    await Promise.all([fund(h, a.id, 10_000n), fund(h, c.id, 10_000n)]);
    for (let round = 0; round < 30; round++) {
      const [x, y] = [newId(), newId()];
      // Same ids, other accounts, opposite order: no shared row lock orders the two inserts.
      const [first, second] = await Promise.all([
        post(h, transfer(a.id, b.id, 1n, { id: x }), transfer(a.id, b.id, 1n, { id: y })),
        post(h, transfer(c.id, d.id, 1n, { id: y }), transfer(c.id, d.id, 1n, { id: x })),
      ]);
      const outcomes = [...first, ...second].map((r) => r.result);
      expect(outcomes.filter((r) => r === PostingResult.OK)).toHaveLength(2);
      expect(outcomes.filter((r) => r === PostingResult.EXISTS_WITH_DIFFERENT_FIELDS)).toHaveLength(2);
    }
  });

  it("reads UUIDs in either case as the same id", async () => {
    const a = await openAccount(h);
    const b = await openAccount(h);
    await fund(h, a.id, 100n);
    const t = transfer(a.id.toUpperCase(), b.id.toUpperCase(), 7n, { id: newId().toUpperCase() });
    const [first] = await post(h, t);
    expect([first.result, first.transfer?.id]).toEqual([PostingResult.OK, t.id!.toLowerCase()]);
    const [again] = await post(h, { ...t, id: t.id!.toLowerCase(), debitAccountId: a.id, creditAccountId: b.id });
    expect(again.result).toBe(PostingResult.EXISTS);
    expect((await h.ledger.lookupTransfers({ transferIds: [t.id!] })).transfers).toHaveLength(1);
  });

  it("applies a transfer replayed 20 times concurrently exactly once", async () => {
    const a = await openAccount(h);
    const b = await openAccount(h);
    await fund(h, a.id, 1_000n);
    const t = transfer(a.id, b.id, 300n);
    const results = (await Promise.all(Array.from({ length: 20 }, () => post(h, t)))).flat();
    expect(results.filter((r) => r.result === PostingResult.OK)).toHaveLength(1);
    expect(results.filter((r) => r.result === PostingResult.EXISTS)).toHaveLength(19);
    expect((await balanceOf(h, b.id)).posted).toBe(300n);
    const count = await withSql(h, (sql) => sql`select count(*)::int as n from account.entries where transfer_id = ${t.id!}`);
    expect(count[0].n).toBe(2);
  });
});

describe("an id the ledger refused", () => {
  it("stays refused: sent again once the funds are there, it is answered with the refusal and moves nothing", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    const t = transfer(a.id, b.id, 50n);
    expect((await post(h, t))[0].result).toBe(PostingResult.INSUFFICIENT_FUNDS);
    await fund(h, a.id, 100n);
    // Another copy of the request, queued somewhere while its caller recorded the refusal.
    expect((await post(h, t))[0].result).toBe(PostingResult.INSUFFICIENT_FUNDS);
    expect((await h.ledger.lookupTransfers({ transferIds: [t.id!] })).transfers).toEqual([]);
    expect(await balanceOf(h, b.id)).toMatchObject({ posted: 0n });
    // A capture refused for its hold's state stays refused too, after the hold is free to take it.
    const hold = transfer(a.id, b.id, 30n, { mode: PostingMode.PENDING });
    await post(h, hold);
    const capture = transfer("", "", 40n, { mode: PostingMode.POST_PENDING, pendingId: hold.id, currency: "" });
    expect((await post(h, capture))[0].result).toBe(PostingResult.EXCEEDS_PENDING_AMOUNT);
    expect((await post(h, { ...capture, amount: 30n }))[0].result).toBe(PostingResult.EXCEEDS_PENDING_AMOUNT);
    expect((await post(h, { ...capture, id: newId(), amount: 30n }))[0].result).toBe(PostingResult.OK);
  });

  it("is not spent by a malformed request: the same id sent again well-formed is applied", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 100n);
    const t = transfer(a.id, b.id, 5n);
    expect((await post(h, { ...t, amount: 0n }))[0].result).toBe(PostingResult.AMOUNT_MUST_BE_POSITIVE);
    expect((await post(h, t))[0].result).toBe(PostingResult.OK);
  });

  it("gets one answer from every copy sent while the funds arrive: applied once, or refused every time", async () => {
    for (let round = 0; round < 5; round++) {
      const [a, b] = [await openAccount(h), await openAccount(h)];
      const t = transfer(a.id, b.id, 60n);
      // Sent a millisecond apart, the funds among them: some copies are decided before the funds, some after.
      const copies: Promise<{ result: PostingResult }[]>[] = [];
      for (let i = 0; i < 20; i++) {
        copies.push(i === 10 ? fund(h, a.id, 100n).then(() => []) : post(h, t));
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      const results = new Set((await Promise.all(copies)).flat().map((r) => r.result));
      const stored = (await h.ledger.lookupTransfers({ transferIds: [t.id!] })).transfers;
      if (stored.length === 1) expect([...results].every((r) => r === PostingResult.OK || r === PostingResult.EXISTS)).toBe(true);
      else expect([...results]).toEqual([PostingResult.INSUFFICIENT_FUNDS]);
      expect((await balanceOf(h, b.id)).posted).toBe(stored.length === 1 ? 60n : 0n);
    }
  });
});

describe("two-phase transfers", () => {
  it("reserves, posts partially once, and releases the rest", async () => {
    const a = await openAccount(h);
    const b = await openAccount(h);
    await fund(h, a.id, 1_000n);
    const hold = transfer(a.id, b.id, 600n, { mode: PostingMode.PENDING, timeoutSeconds: 3600n });
    const [held] = await post(h, hold);
    expect(held.result).toBe(PostingResult.OK);
    expect(held.transfer?.state).toBe(LedgerTransferState.PENDING);
    let balance = await balanceOf(h, a.id);
    expect([balance.posted, balance.debitsPending, balance.available]).toEqual([1_000n, 600n, 400n]);

    const capture = { id: newId(), pendingId: hold.id, amount: 250n, mode: PostingMode.POST_PENDING };
    const [tooMuch] = await post(h, { ...capture, id: newId(), amount: 601n });
    expect(tooMuch.result).toBe(PostingResult.EXCEEDS_PENDING_AMOUNT);
    const [captured] = await post(h, capture);
    expect(captured.result).toBe(PostingResult.OK);
    balance = await balanceOf(h, a.id);
    expect([balance.posted, balance.debitsPending, balance.available]).toEqual([750n, 0n, 750n]);
    expect((await balanceOf(h, b.id)).posted).toBe(250n);

    const [twice] = await post(h, { ...capture, id: newId() });
    expect(twice.result).toBe(PostingResult.PENDING_TRANSFER_ALREADY_POSTED);
    // Resent asking for the whole hold, where 250 of it was captured: not what was done under this id.
    const [wholeResent] = await post(h, { ...capture, amount: 0n });
    expect(wholeResent.result).toBe(PostingResult.EXISTS_WITH_DIFFERENT_FIELDS);
    const [resent] = await post(h, capture);
    expect(resent.result).toBe(PostingResult.EXISTS);
    const [voidAfter] = await post(h, { id: newId(), pendingId: hold.id, mode: PostingMode.VOID_PENDING });
    expect(voidAfter.result).toBe(PostingResult.PENDING_TRANSFER_ALREADY_POSTED);
    const { transfers } = await h.ledger.lookupTransfers({ transferIds: [hold.id!] });
    expect([transfers[0].state, transfers[0].postedAmount]).toEqual([LedgerTransferState.PENDING_POSTED, 250n]);
  });

  it("posts the whole hold when no amount is given, and voids at most once", async () => {
    const a = await openAccount(h);
    const b = await openAccount(h);
    await fund(h, a.id, 1_000n);
    const full = transfer(a.id, b.id, 300n, { mode: PostingMode.PENDING });
    const voided = transfer(a.id, b.id, 200n, { mode: PostingMode.PENDING });
    await post(h, full, voided);
    const [posted, released] = await post(
      h,
      { id: newId(), pendingId: full.id, mode: PostingMode.POST_PENDING },
      { id: newId(), pendingId: voided.id, mode: PostingMode.VOID_PENDING },
    );
    expect([posted.result, posted.transfer?.amount]).toEqual([PostingResult.OK, 300n]);
    expect(released.result).toBe(PostingResult.OK);
    const [postedResent] = await post(h, { id: posted.transfer!.id, pendingId: full.id, mode: PostingMode.POST_PENDING });
    expect(postedResent.result).toBe(PostingResult.EXISTS);
    const [again] = await post(h, { id: newId(), pendingId: voided.id, mode: PostingMode.VOID_PENDING });
    expect(again.result).toBe(PostingResult.PENDING_TRANSFER_ALREADY_VOIDED);
    const [postVoided] = await post(h, { id: newId(), pendingId: voided.id, mode: PostingMode.POST_PENDING });
    expect(postVoided.result).toBe(PostingResult.PENDING_TRANSFER_ALREADY_VOIDED);
    const balance = await balanceOf(h, a.id);
    expect([balance.posted, balance.debitsPending]).toEqual([700n, 0n]);
  });

  it("releases an expired hold's funds, after which it can no longer be posted", async () => {
    const a = await openAccount(h);
    const b = await openAccount(h);
    await fund(h, a.id, 1_000n);
    const hold = transfer(a.id, b.id, 400n, { mode: PostingMode.PENDING, timeoutSeconds: 1n });
    await post(h, hold);
    expect((await balanceOf(h, a.id)).available).toBe(600n);
    await waitFor(async () => (await balanceOf(h, a.id)).debitsPending === 0n, 10_000);
    const { transfers } = await h.ledger.lookupTransfers({ transferIds: [hold.id!] });
    expect(transfers[0].state).toBe(LedgerTransferState.PENDING_EXPIRED);
    expect((await balanceOf(h, a.id)).available).toBe(1_000n);
    const [late] = await post(h, { id: newId(), pendingId: hold.id, mode: PostingMode.POST_PENDING });
    expect(late.result).toBe(PostingResult.PENDING_TRANSFER_EXPIRED);
    expect((await balanceOf(h, b.id)).posted).toBe(0n);
  });
});

describe("linked chains", () => {
  it("apply all or nothing", async () => {
    const a = await openAccount(h);
    const b = await openAccount(h);
    await fund(h, a.id, 100n);
    const results = await post(h, transfer(a.id, b.id, 60n, { linked: true }), transfer(a.id, b.id, 60n), transfer(a.id, b.id, 10n));
    expect(results.map((r) => r.result)).toEqual([PostingResult.LINKED_EVENT_FAILED, PostingResult.INSUFFICIENT_FUNDS, PostingResult.OK]);
    expect((await balanceOf(h, b.id)).posted).toBe(10n);
    const open = await post(h, transfer(a.id, b.id, 1n), transfer(a.id, b.id, 1n, { linked: true }));
    expect(open.map((r) => r.result)).toEqual([PostingResult.OK, PostingResult.LINKED_EVENT_CHAIN_OPEN]);
    // The item before the open chain posted; the chain's last did not.
    expect((await balanceOf(h, b.id)).posted).toBe(11n);
    const ok = await post(h, transfer(a.id, b.id, 5n, { linked: true }), transfer(b.id, a.id, 5n));
    expect(ok.map((r) => r.result)).toEqual([PostingResult.OK, PostingResult.OK]);
  });
});

describe("bad input changes nothing", () => {
  let a: string;
  let b: string;
  let frozen: string;
  let closed: string;
  let euro: string;
  let bank: string;

  beforeAll(async () => {
    a = (await openAccount(h)).id;
    b = (await openAccount(h)).id;
    frozen = (await openAccount(h)).id;
    closed = (await openAccount(h)).id;
    euro = (await openAccount(h, { currency: "EUR" })).id;
    bank = await settlement(h);
    await fund(h, a, 1_000n);
    await fund(h, frozen, 1_000n);
    await h.accounts.freezeAccount({ accountId: frozen, reason: "test" });
    await h.accounts.closeAccount({ accountId: closed });
  });

  const cases: [string, () => Parameters<typeof transfer>, PostingResult][] = [
    ["zero amount", () => [a, b, 0n], PostingResult.AMOUNT_MUST_BE_POSITIVE],
    ["negative amount", () => [a, b, -5n], PostingResult.AMOUNT_MUST_BE_POSITIVE],
    ["unknown currency", () => [a, b, 1n, { currency: "XXX" }], PostingResult.UNKNOWN_CURRENCY],
    ["missing currency", () => [a, b, 1n, { currency: "" }], PostingResult.UNKNOWN_CURRENCY],
    ["same account", () => [a, a, 1n], PostingResult.ACCOUNTS_MUST_BE_DIFFERENT],
    ["unknown debit account", () => [newId(), b, 1n], PostingResult.DEBIT_ACCOUNT_NOT_FOUND],
    ["unknown credit account", () => [a, newId(), 1n], PostingResult.CREDIT_ACCOUNT_NOT_FOUND],
    ["malformed account id", () => [a, "not-a-uuid", 1n], PostingResult.INVALID_ID],
    ["malformed transfer id", () => [a, b, 1n, { id: "42" }], PostingResult.INVALID_ID],
    ["frozen debit account", () => [frozen, b, 1n], PostingResult.DEBIT_ACCOUNT_FROZEN],
    ["frozen credit account", () => [a, frozen, 1n], PostingResult.CREDIT_ACCOUNT_FROZEN],
    ["closed credit account", () => [a, closed, 1n], PostingResult.CREDIT_ACCOUNT_CLOSED],
    ["currency mismatch", () => [a, euro, 1n], PostingResult.CURRENCY_MISMATCH],
    ["insufficient funds", () => [a, b, 1_001n], PostingResult.INSUFFICIENT_FUNDS],
    ["balance overflow", () => [bank, a, INT64_MAX], PostingResult.OVERFLOWS_BALANCE],
    ["no mode", () => [a, b, 1n, { mode: PostingMode.UNSPECIFIED }], PostingResult.INVALID_MODE],
    ["pending id on a posting", () => [a, b, 1n, { pendingId: newId() }], PostingResult.PENDING_ID_NOT_ALLOWED],
    ["timeout on a posting", () => [a, b, 1n, { timeoutSeconds: 5n }], PostingResult.INVALID_TIMEOUT],
    ["negative hold timeout", () => [a, b, 1n, { mode: PostingMode.PENDING, timeoutSeconds: -1n }], PostingResult.INVALID_TIMEOUT],
    ["unknown pending transfer", () => [a, b, 0n, { mode: PostingMode.POST_PENDING, pendingId: newId() }], PostingResult.PENDING_TRANSFER_NOT_FOUND],
    ["finalizing without pending id", () => [a, b, 0n, { mode: PostingMode.VOID_PENDING }], PostingResult.PENDING_ID_REQUIRED],
    ["oversized metadata", () => [a, b, 1n, { metadata: { ["k".repeat(65)]: "v" } }], PostingResult.INVALID_METADATA],
    ["a NUL in metadata", () => [a, b, 1n, { metadata: { note: "\u0000" } }], PostingResult.INVALID_METADATA],
  ];

  it.each(cases)("%s", async (_name, args, expected) => {
    const before = await ledgerSnapshot(h);
    const [result] = await post(h, transfer(...args()));
    expect(PostingResult[result.result]).toBe(PostingResult[expected]);
    expect(await ledgerSnapshot(h)).toEqual(before);
  });

  it("refuses an empty batch and one over 1,000 items as INVALID_ARGUMENT", async () => {
    const before = await ledgerSnapshot(h);
    await expectRpcError(h.ledger.postTransfers({ transfers: [] }), Status.INVALID_ARGUMENT, "BATCH_EMPTY", "transfers");
    const many = Array.from({ length: 1001 }, () => transfer(a, b, 1n));
    await expectRpcError(h.ledger.postTransfers({ transfers: many }), Status.INVALID_ARGUMENT, "BATCH_TOO_LARGE", "transfers");
    expect(await ledgerSnapshot(h)).toEqual(before);
  });

  it("refuses a lookup of more than 1,000 ids", async () => {
    const ids = Array.from({ length: 1001 }, () => newId());
    await expectRpcError(h.ledger.lookupTransfers({ transferIds: ids }), Status.INVALID_ARGUMENT, "BATCH_TOO_LARGE", "transfer_ids");
  });

  it("answers a huge malformed value with a short error, and the connection stays usable", async () => {
    const err = await expectRpcError(h.accounts.getSystemAccount({ currency: "X".repeat(1_000_000) }), Status.INVALID_ARGUMENT, "UNKNOWN_CURRENCY", "currency");
    expect(err.message.length).toBeLessThan(600);
    expect((await h.accounts.getSystemAccount({ currency: "USD" })).account?.currency).toBe("USD");
  });

  it("reads an amount beyond int64 on the wire as negative, and refuses it", async () => {
    // 2^63 as an unsigned varint: what a client with a uint64 would send.
    const beyond = 2n ** 63n;
    const before = await ledgerSnapshot(h);
    const [result] = await post(h, transfer(a, b, BigInt.asIntN(64, beyond)));
    expect(result.result).toBe(PostingResult.AMOUNT_MUST_BE_POSITIVE);
    expect(await ledgerSnapshot(h)).toEqual(before);
  });
});

describe("reconciliation", () => {
  it("finds the ledger balanced after everything above", async () => {
    const report = await h.ledger.reconcile({});
    expect(report.breaches).toEqual([]);
    expect(report.balanced).toBe(true);
    expect(report.transfersChecked).toBeGreaterThan(10n);
    for (const t of report.totals) expect(t.debitsPosted).toBe(t.creditsPosted);
  });

  it("still answers when a currency's totals outgrow int64", async () => {
    const spenders = [await openAccount(h, { currency: "CHF", overdraftLimit: INT64_MAX }), await openAccount(h, { currency: "CHF", overdraftLimit: INT64_MAX })];
    const receivers = [await openAccount(h, { currency: "CHF" }), await openAccount(h, { currency: "CHF" })];
    const results = await post(h, ...spenders.map((s, i) => transfer(s.id, receivers[i].id, INT64_MAX, { currency: "CHF" })));
    expect(results.map((r) => r.result)).toEqual([PostingResult.OK, PostingResult.OK]);
    const report = await h.ledger.reconcile({});
    expect(report.breaches).toEqual([]);
    const chf = report.totals.find((t) => t.currency === "CHF")!;
    expect(BigInt(chf.debitsPosted)).toBe(2n * INT64_MAX);
    expect(chf.creditsPosted).toBe(chf.debitsPosted);
  });

  it("reports a balance that no longer matches its entries, and a transfer applied twice", async () => {
    const a = await openAccount(h);
    const b = await openAccount(h);
    await fund(h, a.id, 50n);
    const t = transfer(a.id, b.id, 20n);
    await post(h, t);
    await withSql(h, async (sql) => {
      await sql`update account.accounts set credits_posted = credits_posted + 1 where id = ${b.id}`;
      await sql`drop index account.entries_applied_once_idx`;
      await sql`insert into account.entries (account_id, transfer_id, counterparty_account_id, direction, layer, event, amount, currency, posted_balance_after, available_balance_after)
                values (${b.id}, ${t.id!}, ${a.id}, 'credit', 'posted', 'post', 20, 'USD', 40, 40)`;
    });
    const report = await h.ledger.reconcile({});
    expect(report.balanced).toBe(false);
    const kinds = report.breaches.map((x) => [BreachKind[x.kind], x.subject]);
    expect(kinds).toEqual(
      expect.arrayContaining([
        ["UNBALANCED_CURRENCY", "USD"],
        ["BALANCE_MISMATCH", b.id],
        ["TRANSFER_APPLIED_TWICE", t.id],
      ]),
    );
  });

  it("reports pending balances that do not match the open holds", async () => {
    const a = await openAccount(h, { currency: "SEK" });
    const b = await openAccount(h, { currency: "SEK" });
    await fund(h, a.id, 100n, "SEK");
    await post(h, transfer(a.id, b.id, 30n, { currency: "SEK", mode: PostingMode.PENDING }));
    await withSql(h, (sql) => sql`update account.ledger_transfers set state = 'pending_voided' where debit_account_id = ${a.id}`);
    const report = await h.ledger.reconcile({});
    const mismatched = report.breaches.filter((x) => x.kind === BreachKind.BALANCE_MISMATCH && x.detail.includes("open holds")).map((x) => x.subject);
    expect(mismatched).toEqual(expect.arrayContaining([a.id, b.id]));
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("a burst of expiring holds", () => {
  it("is released in one pass, not one batch per interval", async () => {
    await h.service.expiry.stop();
    const a = await openAccount(h);
    const b = await openAccount(h);
    await fund(h, a.id, 1_000n);
    await post(h, ...Array.from({ length: 450 }, () => transfer(a.id, b.id, 1n, { mode: PostingMode.PENDING, timeoutSeconds: 1n })));
    expect((await balanceOf(h, a.id)).debitsPending).toBe(450n);
    const later = new Date(Date.now() + 2_000);
    expect(await h.service.expiry.releaseAllDue(later)).toBe(450);
    expect(await balanceOf(h, a.id)).toMatchObject({ debitsPending: 0n, available: 1_000n });
  });

  it("is released around a hold that cannot be expired, which is tried again on the next pass", async () => {
    await h.service.expiry.stop();
    const [a, b, c] = [await openAccount(h), await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 100n);
    await fund(h, c.id, 100n);
    const stuck = transfer(c.id, b.id, 7n, { mode: PostingMode.PENDING, timeoutSeconds: 1n });
    // Due first, so it leads every batch it is in.
    await post(h, stuck);
    await post(h, ...Array.from({ length: 5 }, () => transfer(a.id, b.id, 1n, { mode: PostingMode.PENDING, timeoutSeconds: 1n })));
    const later = new Date(Date.now() + 2_000);
    await withSql(h, async (sql) => {
      await sql.unsafe(`create function account.refuse_expiry() returns trigger language plpgsql as $$ begin raise exception 'this hold cannot be expired'; end $$`);
      await sql.unsafe(`create trigger refuse_expiry before update on account.ledger_transfers for each row when (old.id = '${stuck.id}') execute function account.refuse_expiry()`);
    });
    try {
      await h.service.expiry.releaseAllDue(later);
      expect(await balanceOf(h, a.id)).toMatchObject({ debitsPending: 0n, available: 100n });
      expect(await balanceOf(h, c.id)).toMatchObject({ debitsPending: 7n, available: 93n });
    } finally {
      await withSql(h, (sql) => sql.unsafe("drop function account.refuse_expiry() cascade"));
    }
    await h.service.expiry.releaseAllDue(later);
    expect(await balanceOf(h, c.id)).toMatchObject({ debitsPending: 0n, available: 100n });
  });
});
