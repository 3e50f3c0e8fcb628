import { newId } from "../../../../platform/ids";
import { INT64_MAX } from "../../../../platform/money";
import type { AccountState } from "./model";
import { applyBatch, PostingResult, type LedgerView, type PostingRequest } from "./posting";

const account = (overrides: Partial<AccountState> = {}): AccountState => ({
  id: newId(),
  currency: "USD",
  kind: "customer",
  status: "active",
  overdraftLimit: 0n,
  debitsPosted: 0n,
  creditsPosted: 0n,
  debitsPending: 0n,
  creditsPending: 0n,
  version: 1n,
  ...overrides,
});

const request = (debit: AccountState, credit: AccountState, amount: bigint, overrides: Partial<PostingRequest> = {}): PostingRequest => ({
  id: newId(),
  debitAccountId: debit.id,
  creditAccountId: credit.id,
  amount,
  currency: "USD",
  mode: "post",
  pendingId: "",
  timeoutSeconds: 0n,
  linked: false,
  metadata: {},
  ...overrides,
});

function viewOf(...accounts: AccountState[]): LedgerView {
  return { accounts: new Map(accounts.map((a) => [a.id, a])), transfers: new Map(), refusals: new Map() };
}

const now = new Date("2026-01-01T00:00:00Z");

describe("applyBatch", () => {
  it("sees earlier items of the same batch: a hold created and captured together", () => {
    const a = account({ creditsPosted: 100n });
    const b = account();
    const hold = request(a, b, 80n, { mode: "pending" });
    const capture = request(a, b, 30n, { mode: "post_pending", pendingId: hold.id, debitAccountId: "", creditAccountId: "", currency: "" });
    const { outcomes, effects } = applyBatch([hold, capture], viewOf(a, b), now);
    expect(outcomes.map((o) => o.result)).toEqual([PostingResult.OK, PostingResult.OK]);
    // Each is answered as its own item left it: the hold as created.
    expect([outcomes[0].transfer?.state, outcomes[0].transfer?.postedAmount]).toEqual(["pending", 0n]);
    expect([outcomes[1].transfer?.state, outcomes[1].transfer?.amount]).toEqual(["posted", 30n]);
    // The hold is inserted once, already in its final state.
    expect(effects.inserted.map((t) => [t.id, t.state, t.postedAmount])).toEqual([
      [hold.id, "pending_posted", 30n],
      [capture.id, "posted", 0n],
    ]);
    expect(effects.finalized).toEqual([]);
    const after = effects.accounts.get(a.id)!;
    expect([after.debitsPosted, after.debitsPending]).toEqual([30n, 0n]);
  });

  it("answers a finalize resent without an amount with EXISTS only if the first took the whole hold", () => {
    const a = account({ creditsPosted: 1_000n });
    const b = account();
    const finalize = (mode: "post_pending" | "void_pending", pendingId: string, amount: bigint, id = newId()) =>
      request(a, b, amount, { id, mode, pendingId, debitAccountId: "", creditAccountId: "", currency: "" });
    const [partHold, wholeHold, voidHold] = [request(a, b, 100n, { mode: "pending" }), request(a, b, 100n, { mode: "pending" }), request(a, b, 50n, { mode: "pending" })];
    const part = finalize("post_pending", partHold.id, 40n);
    const whole = finalize("post_pending", wholeHold.id, 0n);
    const voided = finalize("void_pending", voidHold.id, 0n);
    const { outcomes } = applyBatch(
      [
        partHold, wholeHold, voidHold, part, whole, voided,
        // Resent: the whole hold asked for where 40 of it was taken; then as first sent.
        finalize("post_pending", partHold.id, 0n, part.id),
        finalize("post_pending", partHold.id, 40n, part.id),
        // Resent without an amount, and with the whole hold's amount named.
        finalize("post_pending", wholeHold.id, 0n, whole.id),
        finalize("post_pending", wholeHold.id, 100n, whole.id),
        finalize("void_pending", voidHold.id, 0n, voided.id),
      ],
      viewOf(a, b),
      now,
    );
    expect(outcomes.map((o) => PostingResult[o.result])).toEqual([
      ...Array(6).fill("OK"),
      "EXISTS_WITH_DIFFERENT_FIELDS",
      "EXISTS",
      "EXISTS",
      "EXISTS",
      "EXISTS",
    ]);
  });

  it("rolls a failed chain back completely, leaving the view as it was", () => {
    const a = account({ creditsPosted: 50n });
    const b = account();
    const view = viewOf(a, b);
    const { outcomes, effects } = applyBatch([request(a, b, 40n, { linked: true }), request(b, a, 10n, { linked: true }), request(a, b, 40n)], view, now);
    expect(outcomes.map((o) => o.result)).toEqual([PostingResult.LINKED_EVENT_FAILED, PostingResult.LINKED_EVENT_FAILED, PostingResult.INSUFFICIENT_FUNDS]);
    expect(effects.entries).toEqual([]);
    expect(effects.accounts.size).toBe(0);
    expect(view.accounts.get(a.id)).toEqual(a);
  });

  it("counts holds against the funds available to later items", () => {
    const a = account({ creditsPosted: 100n });
    const b = account();
    const { outcomes } = applyBatch([request(a, b, 70n, { mode: "pending" }), request(a, b, 31n)], viewOf(a, b), now);
    expect(outcomes.map((o) => o.result)).toEqual([PostingResult.OK, PostingResult.INSUFFICIENT_FUNDS]);
  });

  it("refuses amounts that would overflow a balance, counting holds too", () => {
    const bank = account({ kind: "settlement" });
    const a = account({ creditsPending: INT64_MAX - 5n });
    const { outcomes } = applyBatch([request(bank, a, 6n), request(bank, a, 5n)], viewOf(bank, a), now);
    expect(outcomes.map((o) => o.result)).toEqual([PostingResult.OVERFLOWS_BALANCE, PostingResult.OK]);
  });

  it("writes entries whose balances-after follow each step", () => {
    const a = account({ creditsPosted: 100n });
    const b = account();
    const { effects } = applyBatch([request(a, b, 10n), request(a, b, 20n, { mode: "pending" })], viewOf(a, b), now);
    const ofA = effects.entries.filter((e) => e.accountId === a.id).map((e) => [e.layer, e.amount, e.postedBalanceAfter, e.availableBalanceAfter]);
    expect(ofA).toEqual([
      ["posted", 10n, 90n, 90n],
      ["pending", 20n, 90n, 70n],
    ]);
    expect(effects.accounts.get(a.id)!.version).toBe(3n);
  });
});
