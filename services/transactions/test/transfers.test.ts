import { status as Status } from "@grpc/grpc-js";
import { create, fromBinary } from "@bufbuild/protobuf";
import { LedgerTransferState, PostingMode } from "../../../gen/tally/account/v1/ledger_pb";
import { EventEnvelopeSchema } from "../../../gen/tally/events/v1/events_pb";
import { ReviewStatus, RuleAction, RuleKind } from "../../../gen/tally/risk/v1/risk_pb";
import { CreateTransferRequestSchema } from "../../../gen/tally/transactions/v1/transaction_service_pb";
import { RiskDecision, TransferKind, TransferSchema, TransferStatus } from "../../../gen/tally/transactions/v1/transfer_pb";
import { ErrorReason, reasonName } from "../../../platform/errors";
import type { RemoteError } from "../../../platform/grpc/status";
import { newId } from "../../../platform/ids";
import { asCaller } from "../../../test/support/caller";
import { eventually, readEvents } from "../../../test/support/events";
import { balanceOf, expectRpcError, fund, newTransferRow, openAccount, rowsIn, statusBecomes, transferRequest, usd, withSql } from "./fixtures";
import { connectDatabase } from "../../../platform/db/connect";
import { testLogger } from "../../../test/support/infra";
import { schema } from "../src/db/schema";
import { fingerprint, IdempotencyKeys } from "../src/domain/idempotency";
import { Transfers, type TransferChanges } from "../src/domain/transfers";
import { startTransactionsHarness, type TransactionsHarness } from "./harness";

let h: TransactionsHarness;
beforeAll(async () => {
  // Every service here shares the test's one event loop (and the machine, other suites): risk's deadline must not decide these outcomes.
  h = await startTransactionsHarness({ transactionsEnv: { RISK_DEADLINE_MS: "30000" } });
});
afterAll(() => h.stop());

async function funded(amount = 10_000_000n) {
  const a = await openAccount(h);
  await fund(h, a.id, amount);
  return a;
}

/** The transactions schema, reached as the service reaches it. */
async function withStore<T>(use: (keys: IdempotencyKeys, store: Transfers) => Promise<T>): Promise<T> {
  const database = connectDatabase({ url: h.db.url, poolSize: 2, log: testLogger(), applicationName: "test" }, schema);
  try {
    const store = new Transfers(database.db, { table: schema.outbox, source: "transactions", subjectPrefix: h.env.NATS_SUBJECT_PREFIX });
    return await use(new IdempotencyKeys(database.db, 24), store);
  } finally {
    await database.close();
  }
}

describe("CreateTransfer", () => {
  it("posts an approved transfer: risk, then the ledger, then the event", async () => {
    const [a, b] = [await funded(), await openAccount(h)];
    const { transfer } = await h.transactions.createTransfer(transferRequest(a.id, b.id, 2_500n, { description: "rent", metadata: { ref: "r1" } }));
    expect(transfer).toMatchObject({ kind: TransferKind.TRANSFER, status: TransferStatus.POSTED, description: "rent", metadata: { ref: "r1" } });
    expect(transfer!.risk?.decision).toBe(RiskDecision.APPROVE);
    expect(transfer!.postedAt).toBeDefined();
    expect((await balanceOf(h, b.id)).posted).toBe(2_500n);
    const events = await eventually(async () => {
      const mine = (await readEvents(h.stream.name)).filter((e) => e.envelope.subjectId === transfer!.id && e.envelope.source === "transactions");
      return mine.length >= 2 ? mine : undefined;
    });
    expect(events.map((e) => e.envelope.type)).toEqual(["transfer_created", "transfer_posted"]);
  });

  it("declines what risk declines, and moves nothing", async () => {
    const [a, b] = [await funded(), await openAccount(h)];
    const { transfer } = await h.transactions.createTransfer(transferRequest(a.id, b.id, 100_000_000n));
    expect([transfer!.status, transfer!.risk?.decision]).toEqual([TransferStatus.DECLINED, RiskDecision.DECLINE]);
    expect((await balanceOf(h, b.id)).posted).toBe(0n);
  });

  it("fails a transfer the ledger refuses, with the ledger's reason", async () => {
    const [a, b] = [await funded(100n), await openAccount(h)];
    const { transfer } = await h.transactions.createTransfer(transferRequest(a.id, b.id, 101n));
    expect(transfer!.status).toBe(TransferStatus.FAILED);
    expect(transfer!.failureMessage).toContain("INSUFFICIENT_FUNDS");
  });

  it("holds a transfer sent to review; an analyst's approval posts it", async () => {
    const [a, b] = [await funded(), await openAccount(h)];
    const { transfer } = await h.transactions.createTransfer(transferRequest(a.id, b.id, 2_000_000n));
    expect([transfer!.status, transfer!.risk?.decision]).toEqual([TransferStatus.HELD, RiskDecision.REVIEW]);
    expect((await balanceOf(h, a.id)).debitsPending).toBe(2_000_000n);
    const review = await eventually(async () => (await h.risk.listReviews({ accountId: a.id })).reviews[0]);
    await h.risk.resolveReview({ reviewId: review.id, resolution: ReviewStatus.APPROVED, note: "ok" });
    const posted = await statusBecomes(h, transfer!.id, TransferStatus.POSTED);
    expect(posted.risk?.reviewId).toBe(review.id);
    expect(await balanceOf(h, b.id)).toMatchObject({ posted: 2_000_000n });
    expect((await balanceOf(h, a.id)).debitsPending).toBe(0n);
  });

  it("voids a transfer whose review is declined", async () => {
    const [a, b] = [await funded(), await openAccount(h)];
    const { transfer } = await h.transactions.createTransfer(transferRequest(a.id, b.id, 3_000_000n));
    const review = await eventually(async () => (await h.risk.listReviews({ accountId: a.id })).reviews[0]);
    await h.risk.resolveReview({ reviewId: review.id, resolution: ReviewStatus.DECLINED, note: "fraud ring" });
    const voided = await statusBecomes(h, transfer!.id, TransferStatus.VOIDED);
    expect(voided.failureMessage).toBe("fraud ring");
    expect(await balanceOf(h, a.id)).toMatchObject({ debitsPending: 0n, posted: 10_000_000n });
  });

  it("voids a transfer approved in review whose capture the ledger refuses, with the ledger's reason", async () => {
    const [a, b] = [await funded(), await openAccount(h)];
    const { transfer } = await h.transactions.createTransfer(transferRequest(a.id, b.id, 2_500_000n));
    expect([transfer!.status, transfer!.risk?.decision]).toEqual([TransferStatus.HELD, RiskDecision.REVIEW]);
    const review = await eventually(async () => (await h.risk.listReviews({ accountId: a.id })).reviews[0]);
    await h.accounts.freezeAccount({ accountId: b.id, reason: "investigation" });
    await h.risk.resolveReview({ reviewId: review.id, resolution: ReviewStatus.APPROVED, note: "ok" });
    // No one would capture it again: its hold is released at once, not left to expire in the review hold's time.
    const voided = await statusBecomes(h, transfer!.id, TransferStatus.VOIDED);
    expect([voided.risk?.decision, voided.failureMessage]).toEqual([RiskDecision.APPROVE, "the ledger refused: CREDIT_ACCOUNT_FROZEN"]);
    expect(await balanceOf(h, a.id)).toMatchObject({ debitsPending: 0n, posted: 10_000_000n });
    expect((await balanceOf(h, b.id)).posted).toBe(0n);
  });
});

describe("deposits and withdrawals go through the settlement account", () => {
  it("deposits into and withdraws from a customer account", async () => {
    const a = await openAccount(h);
    const { transfer: deposit } = await h.transactions.createDeposit({ requestId: newId(), accountId: a.id, amount: usd(50_000n) });
    expect([deposit!.kind, deposit!.status]).toEqual([TransferKind.DEPOSIT, TransferStatus.POSTED]);
    const { account: bank } = await h.accounts.getSystemAccount({ currency: "USD" });
    expect(deposit!.fromAccountId).toBe(bank!.id);
    const { transfer: withdrawal } = await h.transactions.createWithdrawal({ requestId: newId(), accountId: a.id, amount: usd(20_000n) });
    expect([withdrawal!.kind, withdrawal!.status, withdrawal!.toAccountId]).toEqual([TransferKind.WITHDRAWAL, TransferStatus.POSTED, bank!.id]);
    expect((await balanceOf(h, a.id)).posted).toBe(30_000n);
  });
});

describe("authorizations", () => {
  it("hold, then capture part; the rest is released", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const { transfer: hold } = await h.transactions.authorizeTransfer({ ...transferRequest(a.id, b.id, 6_000n), expiresInSeconds: 3600n });
    expect([hold!.status, hold!.kind]).toEqual([TransferStatus.HELD, TransferKind.AUTHORIZATION]);
    expect(hold!.holdExpiresAt).toBeDefined();
    expect((await balanceOf(h, a.id)).available).toBe(4_000n);
    const { transfer: captured } = await h.transactions.captureTransfer({ requestId: newId(), transferId: hold!.id, amount: 2_500n });
    expect([captured!.status, captured!.capturedAmount]).toEqual([TransferStatus.POSTED, 2_500n]);
    expect(await balanceOf(h, a.id)).toMatchObject({ posted: 7_500n, debitsPending: 0n });
    await expectRpcError(h.transactions.captureTransfer({ requestId: newId(), transferId: hold!.id }), Status.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION", "transfer_id");
  });

  it("stay held when the ledger refuses a capture, to be captured once the refusal is gone", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const { transfer: hold } = await h.transactions.authorizeTransfer(transferRequest(a.id, b.id, 6_000n));
    await h.accounts.freezeAccount({ accountId: b.id, reason: "investigation" });
    const { transfer: refused } = await h.transactions.captureTransfer({ requestId: newId(), transferId: hold!.id });
    expect([refused!.status, refused!.failureMessage]).toEqual([TransferStatus.HELD, "the ledger refused: CREDIT_ACCOUNT_FROZEN"]);
    expect((await balanceOf(h, a.id)).debitsPending).toBe(6_000n);
    await h.accounts.unfreezeAccount({ accountId: b.id });
    const { transfer: captured } = await h.transactions.captureTransfer({ requestId: newId(), transferId: hold!.id });
    // Posted: the refusal no longer stands.
    expect([captured!.status, captured!.failureMessage]).toEqual([TransferStatus.POSTED, ""]);
    expect((await balanceOf(h, b.id)).posted).toBe(6_000n);
  });

  it("are recorded as the ledger finalized them when an earlier capture or void of theirs was posted late (by a driver that outlived its claim)", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const { transfer: hold } = await h.transactions.authorizeTransfer(transferRequest(a.id, b.id, 6_000n));
    await h.ledger.postTransfers({ transfers: [{ id: newId(), pendingId: hold!.id, amount: 2_000n, mode: PostingMode.POST_PENDING }] });
    // This capture (of all the hold) finds it posted already: the transfer moved what the ledger posted.
    const { transfer: captured } = await h.transactions.captureTransfer({ requestId: newId(), transferId: hold!.id });
    expect([captured!.status, captured!.capturedAmount, captured!.failureMessage]).toEqual([TransferStatus.POSTED, 2_000n, ""]);
    expect(await balanceOf(h, a.id)).toMatchObject({ posted: 8_000n, debitsPending: 0n });
    expect((await balanceOf(h, b.id)).posted).toBe(2_000n);

    const { transfer: other } = await h.transactions.authorizeTransfer(transferRequest(a.id, b.id, 1_000n));
    await h.ledger.postTransfers({ transfers: [{ id: newId(), pendingId: other!.id, mode: PostingMode.VOID_PENDING }] });
    const { transfer: voided } = await h.transactions.captureTransfer({ requestId: newId(), transferId: other!.id });
    expect(voided!.status).toBe(TransferStatus.VOIDED);
    expect(await balanceOf(h, a.id)).toMatchObject({ posted: 8_000n, debitsPending: 0n });
  });

  it("keep a newer capture from a driver that outlived its claim on an earlier one, which the ledger refused", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const { transfer: hold } = await h.transactions.authorizeTransfer(transferRequest(a.id, b.id, 6_000n));
    const held = await withStore((_, store) => store.get(hold!.id));
    // A newer capture at work: its driver holds the claim (for an hour, so recovery leaves it alone meanwhile).
    const newer = newId();
    await withSql(h, (sql) => sql`update transactions.transfers set step = 'capture', finalize_ledger_id = ${newer}, capture_amount = 0, lease_until = now() + interval '1 hour' where id = ${hold!.id}`);
    // The earlier capture's driver comes back, its claim long lapsed; the ledger refuses it (the payee frozen meanwhile).
    await h.accounts.freezeAccount({ accountId: b.id, reason: "investigation" });
    const stale = { ...held, step: "capture" as const, finalizeLedgerId: newId(), captureAmount: 0n, leaseUntil: new Date(Date.now() - 60_000) };
    const after = await h.service.orchestrator.drive(hold!.id, stale);
    // Its refusal is not saved over the newer capture, which would have ended it and left the hold to the ledger.
    expect([after.status, after.step, after.finalizeLedgerId, after.failureMessage]).toEqual(["held", "capture", newer, ""]);

    // The newer capture's driver is gone too: recovery captures it once the payee is let go.
    await h.accounts.unfreezeAccount({ accountId: b.id });
    await withSql(h, (sql) => sql`update transactions.transfers set lease_until = null where id = ${hold!.id}`);
    const captured = await statusBecomes(h, hold!.id, TransferStatus.POSTED);
    expect(captured.capturedAmount).toBe(6_000n);
    expect((await balanceOf(h, b.id)).posted).toBe(6_000n);
  });

  it("take the ledger's word when a capture by a driver that outlived its claim posts after the transfer was left held", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const { transfer: hold } = await h.transactions.authorizeTransfer(transferRequest(a.id, b.id, 6_000n));
    // At rest, held (as after another capture of it was refused and noted), when the driver of an earlier
    // capture, its claim long lapsed, comes back and posts it: no one would drive the transfer again.
    const held = await withStore((_, store) => store.get(hold!.id));
    const stale = { ...held, step: "capture" as const, finalizeLedgerId: newId(), captureAmount: 4_000n, leaseUntil: new Date(Date.now() - 60_000) };
    const after = await h.service.orchestrator.drive(hold!.id, stale);
    expect([after.status, after.step, after.capturedAmount]).toEqual(["posted", "done", 4_000n]);
    expect((await h.transactions.getTransfer({ transferId: hold!.id })).transfer!.status).toBe(TransferStatus.POSTED);
    expect((await balanceOf(h, b.id)).posted).toBe(4_000n);
    expect(await balanceOf(h, a.id)).toMatchObject({ posted: 6_000n, debitsPending: 0n });
  });

  it("expire with their hold even when it expired while a capture the ledger refused was on its way", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const { transfer: hold } = await h.transactions.authorizeTransfer({ ...transferRequest(a.id, b.id, 1_000n), expiresInSeconds: 1n });
    // A capture on its way (its driver holds the claim) when the ledger lets the hold expire.
    await withSql(h, (sql) => sql`update transactions.transfers set step = 'capture', finalize_ledger_id = ${newId()}, lease_until = now() + interval '1 hour' where id = ${hold!.id}`);
    await eventually(async () => (await h.ledger.lookupTransfers({ transferIds: [hold!.id] })).transfers[0]?.state === LedgerTransferState.PENDING_EXPIRED);
    // The ledger's event meanwhile reaches the service; then the capture comes back, refused before the expiry.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await withSql(h, (sql) => sql`update transactions.transfers set step = 'done', finalize_ledger_id = null, lease_until = null, failure_reason = 'ACCOUNT_FROZEN' where id = ${hold!.id}`);
    await statusBecomes(h, hold!.id, TransferStatus.EXPIRED);
    expect((await balanceOf(h, a.id)).available).toBe(10_000n);
  });

  it("void releases the hold", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const { transfer: hold } = await h.transactions.authorizeTransfer(transferRequest(a.id, b.id, 6_000n));
    const { transfer: voided } = await h.transactions.voidTransfer({ requestId: newId(), transferId: hold!.id, reason: "cancelled order" });
    expect(voided!.status).toBe(TransferStatus.VOIDED);
    expect((await balanceOf(h, a.id)).available).toBe(10_000n);
  });

  it("expire with the ledger's hold, and can no longer be captured", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const { transfer: hold } = await h.transactions.authorizeTransfer({ ...transferRequest(a.id, b.id, 1_000n), expiresInSeconds: 1n });
    await statusBecomes(h, hold!.id, TransferStatus.EXPIRED);
    expect((await balanceOf(h, a.id)).available).toBe(10_000n);
    await expectRpcError(h.transactions.captureTransfer({ requestId: newId(), transferId: hold!.id }), Status.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION", "transfer_id");
  });
});

describe("reversals", () => {
  it("reverse a posted transfer with a new, linked transfer, once", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const { transfer } = await h.transactions.createTransfer(transferRequest(a.id, b.id, 3_000n));
    const { reversal, original } = await h.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id, reason: "refund" });
    expect(reversal).toMatchObject({ kind: TransferKind.REVERSAL, status: TransferStatus.POSTED, reversesTransferId: transfer!.id, fromAccountId: b.id, toAccountId: a.id });
    expect(reversal!.amount?.amount).toBe(3_000n);
    expect([original!.status, original!.reversedAmount]).toEqual([TransferStatus.REVERSED, 3_000n]);
    expect((await balanceOf(h, a.id)).posted).toBe(10_000n);
    await expectRpcError(h.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id }), Status.FAILED_PRECONDITION, "TRANSFER_ALREADY_REVERSED", "transfer_id");
    await expectRpcError(h.transactions.reverseTransfer({ requestId: newId(), transferId: reversal!.id }), Status.FAILED_PRECONDITION, "TRANSFER_NOT_REVERSIBLE", "transfer_id");
  });

  /** 3,000 paid from a to b, and a rule acting on reversals that take money back from b. */
  async function paidWithRuleOnItsReversals(action: RuleAction) {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const { transfer } = await h.transactions.createTransfer(transferRequest(a.id, b.id, 3_000n));
    const expression = `transfer.kind == "reversal" && transfer.from_account_id == "${b.id}"`;
    const { rule } = await h.risk.createRule({ rule: { name: `reversals from ${b.id}`, kind: RuleKind.ASSESSMENT, expression, action, enabled: true } });
    return { b, transfer, rule };
  }

  it("are assessed by risk as any movement: one declined moves nothing and gives back what it set aside", async () => {
    const { b, transfer, rule } = await paidWithRuleOnItsReversals(RuleAction.DECLINE);
    try {
      const { reversal } = await h.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id, amount: 1_000n });
      expect([reversal!.status, reversal!.risk?.decision]).toEqual([TransferStatus.DECLINED, RiskDecision.DECLINE]);
      const original = (await h.transactions.getTransfer({ transferId: transfer!.id })).transfer!;
      expect([original.status, original.reversedAmount]).toEqual([TransferStatus.POSTED, 0n]);
      expect((await balanceOf(h, b.id)).posted).toBe(3_000n);
    } finally {
      await h.risk.disableRule({ ruleId: rule!.id });
    }
    // Nothing of it stays set aside: the whole transfer can still be reversed.
    const { reversal, original } = await h.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id });
    expect([reversal!.status, reversal!.amount?.amount, original!.status]).toEqual([TransferStatus.POSTED, 3_000n, TransferStatus.REVERSED]);
  });

  it("sent to review, wait as holds on the account that received the money; one declined there gives back what it set aside", async () => {
    const { b, transfer, rule } = await paidWithRuleOnItsReversals(RuleAction.REVIEW);
    try {
      const { reversal } = await h.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id, amount: 1_000n });
      expect([reversal!.status, reversal!.risk?.decision]).toEqual([TransferStatus.HELD, RiskDecision.REVIEW]);
      expect((await balanceOf(h, b.id)).debitsPending).toBe(1_000n);
      const review = await eventually(async () => (await h.risk.listReviews({ accountId: b.id })).reviews[0]);
      await h.risk.resolveReview({ reviewId: review.id, resolution: ReviewStatus.DECLINED, note: "not a refund" });
      await statusBecomes(h, reversal!.id, TransferStatus.VOIDED);
      expect(await balanceOf(h, b.id)).toMatchObject({ debitsPending: 0n, posted: 3_000n });
      expect((await h.transactions.getTransfer({ transferId: transfer!.id })).transfer!.reversedAmount).toBe(0n);
    } finally {
      await h.risk.disableRule({ ruleId: rule!.id });
    }
    const { reversal } = await h.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id });
    expect([reversal!.status, reversal!.amount?.amount]).toEqual([TransferStatus.POSTED, 3_000n]);
  });

  it("reverse in parts, never beyond the amount", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const { transfer } = await h.transactions.createTransfer(transferRequest(a.id, b.id, 1_000n));
    const { original } = await h.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id, amount: 400n });
    expect([original!.status, original!.reversedAmount]).toEqual([TransferStatus.POSTED, 400n]);
    await expectRpcError(h.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id, amount: 601n }), Status.FAILED_PRECONDITION, "REVERSAL_EXCEEDS_AMOUNT", "amount");
    const { original: done } = await h.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id });
    expect([done!.status, done!.reversedAmount]).toEqual([TransferStatus.REVERSED, 1_000n]);
  });
});

describe("reversals racing", () => {
  it("never exceed the transfer, and mark it reversed only by what actually posted", async () => {
    const [a, b, c] = [await funded(10_000n), await openAccount(h), await openAccount(h)];
    const { transfer } = await h.transactions.createTransfer(transferRequest(a.id, b.id, 1_000n));
    // The receiver spends half: a reversal of more than 500 cannot post.
    await h.transactions.createTransfer(transferRequest(b.id, c.id, 500n));
    const [small, large] = await Promise.all([
      h.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id, amount: 400n }),
      h.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id, amount: 600n }),
    ]);
    expect([small.reversal!.status, large.reversal!.status]).toEqual([TransferStatus.POSTED, TransferStatus.FAILED]);
    const { transfer: original } = await h.transactions.getTransfer({ transferId: transfer!.id });
    expect([original!.status, original!.reversedAmount]).toEqual([TransferStatus.POSTED, 400n]);
    await fund(h, b.id, 1_000n);
    const { original: done } = await h.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id });
    expect([done!.status, done!.reversedAmount]).toEqual([TransferStatus.REVERSED, 1_000n]);
  });
});

describe("idempotency", () => {
  it("executes a request sent 20 times at once once, and answers all 20 alike", async () => {
    const [a, b] = [await funded(), await openAccount(h)];
    const request = transferRequest(a.id, b.id, 700n);
    const replies = await Promise.all(Array.from({ length: 20 }, () => h.transactions.createTransfer(request)));
    for (const reply of replies) expect(reply).toEqual(replies[0]);
    expect(replies[0].transfer!.status).toBe(TransferStatus.POSTED);
    expect((await balanceOf(h, b.id)).posted).toBe(700n);
    const { transfers } = await h.transactions.listTransfers({ accountId: b.id });
    expect(transfers).toHaveLength(1);
  });

  it("returns the same outcome for a replay, failures included, and refuses another body under the key", async () => {
    const [a, b] = [await funded(100n), await openAccount(h)];
    const request = transferRequest(a.id, b.id, 500n);
    const first = await h.transactions.createTransfer(request);
    expect(first.transfer!.status).toBe(TransferStatus.FAILED);
    await fund(h, a.id, 1_000n);
    const again = await h.transactions.createTransfer(request);
    expect(again.transfer).toEqual(first.transfer);
    await expectRpcError(h.transactions.createTransfer({ ...request, amount: usd(501n) }), Status.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED", "request_id");
    await expectRpcError(h.transactions.createDeposit({ requestId: request.requestId, accountId: a.id, amount: usd(500n) }), Status.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED", "request_id");
  });

  it("keeps each caller's request ids apart: the same id from two callers is two requests, and a caller replays only its own", async () => {
    const [a, b, c] = [await funded(10_000n), await funded(10_000n), await openAccount(h)];
    const requestId = `order-${newId()}`;
    const [alices, bobs] = await Promise.all([
      h.transactions.createTransfer(transferRequest(a.id, c.id, 300n, { requestId }), asCaller("alice")),
      h.transactions.createTransfer(transferRequest(b.id, c.id, 400n, { requestId }), asCaller("bob")),
    ]);
    expect([alices.transfer!.status, bobs.transfer!.status]).toEqual([TransferStatus.POSTED, TransferStatus.POSTED]);
    expect(alices.transfer!.id).not.toBe(bobs.transfer!.id);
    expect([alices.transfer!.requestId, bobs.transfer!.requestId]).toEqual([requestId, requestId]);
    expect((await balanceOf(h, c.id)).posted).toBe(700n);
    // Each caller's replay gets its own answer; another body under its id is refused, whoever else used the id.
    expect(await h.transactions.createTransfer(transferRequest(a.id, c.id, 300n, { requestId }), asCaller("alice"))).toEqual(alices);
    await expectRpcError(h.transactions.createTransfer(transferRequest(b.id, c.id, 400n, { requestId }), asCaller("alice")), Status.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED", "request_id");
    // A call from inside (no principal) has ids of its own too; a "/" cannot forge another caller's.
    const inside = await h.transactions.createTransfer(transferRequest(a.id, c.id, 300n, { requestId }));
    expect(inside.transfer!.id).not.toBe(alices.transfer!.id);
    await expectRpcError(h.transactions.createTransfer(transferRequest(a.id, c.id, 300n, { requestId: `alice/${requestId}` })), Status.INVALID_ARGUMENT, "INVALID_FIELD", "request_id");
    // Captures, voids and reversals are the caller's own requests alike.
    const capture = { requestId: `capture-${newId()}`, transferId: (await h.transactions.authorizeTransfer(transferRequest(a.id, c.id, 100n), asCaller("alice"))).transfer!.id };
    expect((await h.transactions.captureTransfer(capture, asCaller("alice"))).transfer!.status).toBe(TransferStatus.POSTED);
    await expectRpcError(h.transactions.captureTransfer(capture, asCaller("bob")), Status.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION", "transfer_id");
    expect((await balanceOf(h, c.id)).posted).toBe(1_100n);
  });

  it("answers a replay with the first answer, even after the transfer moved on", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const request = transferRequest(a.id, b.id, 700n);
    const first = await h.transactions.authorizeTransfer(request);
    expect(first.transfer!.status).toBe(TransferStatus.HELD);
    await h.transactions.captureTransfer({ requestId: newId(), transferId: first.transfer!.id });
    expect(await h.transactions.authorizeTransfer(request)).toEqual(first);
  });

  it("applies a client-chosen transfer id once: other requests naming it, even all at once, are refused and move nothing", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const transferId = newId();
    const attempts = await Promise.allSettled(Array.from({ length: 8 }, () => h.transactions.createTransfer(transferRequest(a.id, b.id, 300n, { transferId }))));
    expect(attempts.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const refused of attempts.filter((r) => r.status === "rejected")) {
      const err = (refused as PromiseRejectedResult).reason as RemoteError;
      expect([err.code, err.reasonName, err.field]).toEqual([Status.ALREADY_EXISTS, "EXISTS_WITH_DIFFERENT_FIELDS", "transfer_id"]);
    }
    await expectRpcError(h.transactions.createTransfer(transferRequest(a.id, b.id, 300n, { transferId })), Status.ALREADY_EXISTS, "EXISTS_WITH_DIFFERENT_FIELDS", "transfer_id");
    expect((await balanceOf(h, b.id)).posted).toBe(300n);
  });
});

describe("GetTransfer and ListTransfers", () => {
  it("list an account's transfers newest first, by status, in pages", async () => {
    const [a, b] = [await funded(100_000n), await openAccount(h)];
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await h.transactions.createTransfer(transferRequest(a.id, b.id, BigInt(10 + i)))).transfer!.id);
    await h.transactions.createTransfer(transferRequest(a.id, b.id, 1_000_000_000n)); // declined
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await h.transactions.listTransfers({ accountId: b.id, statuses: [TransferStatus.POSTED], pageSize: 2, pageToken });
      seen.push(...page.transfers.map((t) => t.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual([...ids].reverse());
    const declined = await h.transactions.listTransfers({ accountId: a.id, statuses: [TransferStatus.DECLINED] });
    expect(declined.transfers).toHaveLength(1);
  });
});

describe("bad input gets a clear error and changes nothing", () => {
  const bad: [string, () => Promise<unknown>, Status, string, string][] = [
    ["no request id", () => h.transactions.createTransfer({ ...transferRequest(newId(), newId(), 1n), requestId: "" }), Status.INVALID_ARGUMENT, "MISSING_FIELD", "request_id"],
    ["no amount", () => h.transactions.createTransfer({ ...transferRequest(newId(), newId(), 1n), amount: undefined }), Status.INVALID_ARGUMENT, "MISSING_FIELD", "amount"],
    ["a zero amount", () => h.transactions.createTransfer(transferRequest(newId(), newId(), 0n)), Status.INVALID_ARGUMENT, "AMOUNT_MUST_BE_POSITIVE", "amount.amount"],
    ["an unknown currency", () => h.transactions.createTransfer(transferRequest(newId(), newId(), 1n, { amount: { amount: 1n, currency: "ABC" } })), Status.INVALID_ARGUMENT, "UNKNOWN_CURRENCY", "amount.currency"],
    ["a malformed account", () => h.transactions.createTransfer(transferRequest("x", newId(), 1n)), Status.INVALID_ARGUMENT, "INVALID_ID", "from_account_id"],
    ["the same account twice", () => { const id = newId(); return h.transactions.createTransfer(transferRequest(id, id, 1n)); }, Status.INVALID_ARGUMENT, "ACCOUNTS_MUST_BE_DIFFERENT", "to_account_id"],
    ["a NUL in metadata", () => h.transactions.createTransfer(transferRequest(newId(), newId(), 1n, { metadata: { a: "\u0000" } })), Status.INVALID_ARGUMENT, "INVALID_FIELD", "metadata.a"],
    ["an unknown transfer to capture", () => h.transactions.captureTransfer({ requestId: newId(), transferId: newId() }), Status.NOT_FOUND, "TRANSFER_NOT_FOUND", "transfer_id"],
    ["an unknown transfer to reverse", () => h.transactions.reverseTransfer({ requestId: newId(), transferId: newId() }), Status.NOT_FOUND, "TRANSFER_NOT_FOUND", "transfer_id"],
    ["a negative capture", () => h.transactions.captureTransfer({ requestId: newId(), transferId: newId(), amount: -1n }), Status.INVALID_ARGUMENT, "AMOUNT_MUST_BE_POSITIVE", "amount"],
    ["a forged page token", () => h.transactions.listTransfers({ accountId: newId(), pageToken: "zz" }), Status.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN", "page_token"],
    ["an empty batch", () => h.transactions.batchCreateTransfers({ transfers: [] }), Status.INVALID_ARGUMENT, "BATCH_EMPTY", "transfers"],
    ["an unknown account", () => h.transactions.createTransfer(transferRequest(newId(), newId(), 1n)), Status.NOT_FOUND, "ACCOUNT_NOT_FOUND", "from_account_id"],
    ["a deposit to an unknown account", () => h.transactions.createDeposit({ requestId: newId(), accountId: newId(), amount: usd(1n) }), Status.NOT_FOUND, "ACCOUNT_NOT_FOUND", "account_id"],
    ["an out-of-range time filter", () => h.transactions.listTransfers({ accountId: newId(), created: { startTime: { seconds: 100_000_000_000_000n } } }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "created.start_time"],
    // A time JavaScript can hold but PostgreSQL cannot.
    ["a time filter past the year 9999", () => h.transactions.listTransfers({ accountId: newId(), created: { endTime: { seconds: 6_000_000_000_000n } } }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "created.end_time"],
    ["a time filter before the year 1", () => h.transactions.listTransfers({ accountId: newId(), created: { startTime: { seconds: -1_000_000_000_000n } } }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "created.start_time"],
    ["an oversized batch", () => h.transactions.batchCreateTransfers({ transfers: Array.from({ length: 1001 }, () => transferRequest(newId(), newId(), 1n)) }), Status.INVALID_ARGUMENT, "BATCH_TOO_LARGE", "transfers"],
  ];
  it.each(bad)("%s", async (_name, call, code, reason, field) => {
    const before = [await rowsIn(h, "transfers"), await rowsIn(h, "idempotency_keys"), await rowsIn(h, "outbox")];
    await expectRpcError(call(), code, reason, field);
    expect([await rowsIn(h, "transfers"), await rowsIn(h, "idempotency_keys"), await rowsIn(h, "outbox")]).toEqual(before);
  });
});

describe("BatchCreateTransfers", () => {
  it("answers every item on its own", async () => {
    const [a, b] = [await funded(1_000n), await openAccount(h)];
    const { results } = await h.transactions.batchCreateTransfers({
      transfers: [transferRequest(a.id, b.id, 100n), transferRequest(a.id, b.id, 0n), transferRequest(a.id, b.id, 5_000n), transferRequest(a.id, b.id, 200n)],
    });
    expect(results.map((r) => [r.index, r.transfer?.status ?? r.errorReason])).toEqual([
      [0, TransferStatus.POSTED],
      [1, 5],
      [2, TransferStatus.FAILED],
      [3, TransferStatus.POSTED],
    ]);
    expect((await balanceOf(h, b.id)).posted).toBe(300n);
  });

  it("records its items together, each under its own key with its own outcome: new, replayed, refused, or naming a taken id", async () => {
    const [a, b] = [await funded(1_000_000n), await openAccount(h)];
    const earlier = transferRequest(a.id, b.id, 7n);
    const { transfer: first } = await h.transactions.createTransfer(earlier);
    // Four from each of ten accounts: fewer than the shipped velocity rule sends to review.
    const senders = await Promise.all(Array.from({ length: 10 }, () => funded(1_000_000n)));
    const fresh = Array.from({ length: 40 }, (_, i) => transferRequest(senders[i % 10].id, b.id, BigInt(100 + i)));
    const before = await rowsIn(h, "idempotency_keys");
    const { results } = await h.transactions.batchCreateTransfers({
      transfers: [
        ...fresh.slice(0, 20),
        earlier,
        { ...earlier, amount: usd(8n) },
        transferRequest(a.id, b.id, 9n, { transferId: first!.id }),
        ...fresh.slice(20),
      ],
    });
    const outcome = (i: number) => results[i].transfer?.status ?? reasonName(results[i].errorReason);
    expect(fresh.map((_, i) => outcome(i < 20 ? i : i + 3))).toEqual(fresh.map(() => TransferStatus.POSTED));
    expect([outcome(20), results[20].transfer?.id]).toEqual([TransferStatus.POSTED, first!.id]);
    expect([outcome(21), outcome(22)]).toEqual(["IDEMPOTENCY_KEY_REUSED", "EXISTS_WITH_DIFFERENT_FIELDS"]);
    // Only the new requests left keys behind; what was refused recorded nothing.
    expect(await rowsIn(h, "idempotency_keys")).toBe(before + 40);
    expect((await balanceOf(h, b.id)).posted).toBe(7n + fresh.reduce((sum, t) => sum + t.amount.amount, 0n));
    const requestIds = fresh.map((t) => t.requestId);
    const [shared] = await withSql(h, (sql) => sql`
      select count(distinct t.created_at)::int as creations, count(distinct k.xmin::text)::int as answers
      from transactions.transfers t join transactions.idempotency_keys k on k.request_id = t.request_id
      where t.request_id = any(${requestIds})`);
    // Created in a few shared transactions (a transaction's rows share its start time), and answered in a few shared statements.
    expect(shared.creations).toBeLessThan(20);
    expect(shared.answers).toBeLessThan(20);
  });
});

describe("BatchCreateTransfers at scale", () => {
  it("works on all of a batch's items at once, so that risk decides them in a few shared calls", async () => {
    // Three from each of a hundred accounts: fewer than the shipped velocity rule sends to review.
    const [senders, b] = [await Promise.all(Array.from({ length: 100 }, () => funded(1_000_000n))), await openAccount(h)];
    const items = Array.from({ length: 300 }, (_, i) => transferRequest(senders[i % 100].id, b.id, 10n));
    const { results } = await h.transactions.batchCreateTransfers({ transfers: items });
    // Each approved by risk itself (not its fallback), with no rule met, and posted: at once, or by
    // recovery if a busy machine made the ledger's call outlast its deadline.
    const outcomes = results.map((r) => ({ fallback: r.transfer?.risk?.fallback, reasons: r.transfer?.risk?.reasons }));
    expect(outcomes).toEqual(items.map(() => ({ fallback: false, reasons: [] })));
    const ids = results.map((r) => r.transfer!.id);
    for (const id of ids) await statusBecomes(h, id, TransferStatus.POSTED, 30_000);
    const [risk] = await withSql(h, (sql) => sql`select count(distinct xmin::text)::int as calls from risk.assessments where transfer_id = any(${ids})`);
    // At most 100 to a call, one call at a time: with all 300 waiting, four or five calls (the first may go alone); with a few at a time, many more.
    expect(risk.calls).toBeLessThanOrEqual(6);
  }, 120_000);
});

describe("changes to transfers", () => {
  it("made at once commit together, each only while what it expects holds, with an event for each new status", async () => {
    const database = connectDatabase({ url: h.db.url, poolSize: 4, log: testLogger(), applicationName: "test" }, schema);
    try {
      const store = new Transfers(database.db, { table: schema.outbox, source: "transactions", subjectPrefix: h.env.NATS_SUBJECT_PREFIX });
      const leaseUntil = new Date(Date.now() + 60_000);
      const news = Array.from({ length: 40 }, () => ({ ...newTransferRow(), leaseUntil }));
      await database.db.transaction((tx) => store.insertMany(tx, news.map((row) => ({ row }))));
      const risk = { decision: "RISK_DECISION_APPROVE", score: 3 };
      const postedAt = new Date("2026-01-02T03:04:05.678Z");
      // Four kinds of change, mixed: a step alone; a new status clearing a column; a step that expects another step; a status that expects a status.
      const kinds: [TransferChanges, Parameters<Transfers["change"]>[2]][] = [
        [{ step: "post", risk }, { step: "assess" }],
        [{ status: "posted", step: "done", postedAt, leaseUntil: null, capturedAmount: 2n ** 62n }, { step: "assess" }],
        [{ step: "hold", failureMessage: undefined }, { step: "post" }],
        [{ status: "declined", step: "done", failureReason: "RISK_DECLINED" }, { status: "created" }],
      ];
      const changed = await Promise.all(news.map((t, i) => store.change(t.id, ...kinds[i % 4])));

      const [first, second, third, fourth] = [0, 1, 2, 3].map((k) => changed.filter((_, i) => i % 4 === k));
      expect(first.map((r) => [r?.status, r?.step, r?.risk])).toEqual(first.map(() => ["created", "post", risk]));
      expect(second.map((r) => [r?.status, r?.step, r?.postedAt, r?.leaseUntil, r?.capturedAmount])).toEqual(second.map(() => ["posted", "done", postedAt, null, 2n ** 62n]));
      expect(third).toEqual(third.map(() => undefined));
      expect(fourth.map((r) => [r?.status, r?.step, r?.failureReason, r?.leaseUntil])).toEqual(fourth.map(() => ["declined", "done", "RISK_DECLINED", leaseUntil]));
      // As stored: what each change returned, and the refused changes left their rows as they were.
      const stored = await store.find(news.map((t) => t.id));
      expect(stored.map((r, i) => (i % 4 === 2 ? [r.status, r.step] : r))).toEqual(changed.map((r, i) => (i % 4 === 2 ? ["created", "assess"] : r)));

      const ids = news.map((t) => t.id);
      const rows = await withSql(h, (sql) => sql<{ payload: Uint8Array }[]>`select payload from transactions.outbox`);
      const events = rows.map((r) => fromBinary(EventEnvelopeSchema, r.payload)).filter((e) => ids.includes(e.subjectId) && e.type !== "transfer_created");
      expect(events.map((e) => [e.subjectId, e.type]).sort()).toEqual(
        [...ids.filter((_, i) => i % 4 === 1).map((id) => [id, "transfer_posted"]), ...ids.filter((_, i) => i % 4 === 3).map((id) => [id, "transfer_declined"])].sort(),
      );
      // Committed in a few shared transactions, steps and statuses alike (a transaction's rows share its xmin).
      const [shared] = await withSql(h, (sql) => sql`select count(distinct xmin::text)::int as transactions from transactions.transfers where id = any(${ids}) and step <> 'assess'`);
      expect(shared.transactions).toBeLessThan(5);
    } finally {
      await database.close();
    }
  });
});

describe("accounts are checked before anything is recorded", () => {
  it("refuses a currency the account does not hold", async () => {
    const [a, b] = [await funded(1_000n), await openAccount(h, { currency: "EUR" })];
    const before = await rowsIn(h, "transfers");
    await expectRpcError(h.transactions.createTransfer(transferRequest(a.id, b.id, 10n)), Status.FAILED_PRECONDITION, "CURRENCY_MISMATCH", "amount.currency");
    expect(await rowsIn(h, "transfers")).toBe(before);
  });
});

describe("a driver that outlived its claim", () => {
  it("saves nothing over the claim of the driver after it, even at the same step: the ledger's refusal of its posting is the next one's to meet and record", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    // Left at its posting, claimed now by another driver (for an hour, so recovery leaves it alone meanwhile).
    const id = newId();
    await withSql(h, (sql) => sql`insert into transactions.transfers (id, request_id, kind, status, step, from_account_id, to_account_id, amount, currency, lease_until)
                                   values (${id}, ${newId()}, 'transfer', 'created', 'post', ${a.id}, ${b.id}, 100, 'USD', now() + interval '1 hour')`);
    const current = await withStore((_, store) => store.get(id));
    // The earlier driver, its claim long lapsed, posts while the funds are not there yet: refused.
    const stale = await h.service.orchestrator.drive(id, { ...current, leaseUntil: new Date(Date.now() - 60_000) });
    expect([stale.status, stale.step, stale.failureReason]).toEqual(["created", "post", ""]);

    // The funds arrive; the driver holding the claim is gone too, and recovery posts it: the ledger
    // decided that posting once, so it is refused again, and the transfer fails with nothing moved.
    await fund(h, a.id, 100n);
    await withSql(h, (sql) => sql`update transactions.transfers set lease_until = null where id = ${id}`);
    const failed = await statusBecomes(h, id, TransferStatus.FAILED);
    expect(failed.failureReason).toBe(ErrorReason.INSUFFICIENT_FUNDS);
    expect((await balanceOf(h, b.id)).posted).toBe(0n);
  });
});

describe("recovery", () => {
  it("drives the transfers behind one it cannot drive", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    // Two transfers left between steps by a replica that died, their claims lapsed; the database refuses
    // every change to the older one (a trigger stands in for whatever would make driving it fail).
    const [stuck, next] = [newId(), newId()];
    await withSql(h, async (sql) => {
      for (const [id, ago] of [[stuck, "10 minutes"], [next, "5 minutes"]]) {
        await sql`insert into transactions.transfers (id, request_id, kind, status, step, from_account_id, to_account_id, amount, currency, updated_at)
                  values (${id}, ${newId()}, 'transfer', 'created', 'post', ${a.id}, ${b.id}, 100, 'USD', now() - ${ago}::interval)`;
      }
      await sql.unsafe(`create function transactions.refuse_stuck() returns trigger language plpgsql as $$
        begin if old.id = '${stuck}' then raise exception 'this transfer cannot be changed'; end if; return new; end $$`);
      await sql.unsafe("create trigger refuse_stuck before update on transactions.transfers for each row execute function transactions.refuse_stuck()");
    });
    try {
      await statusBecomes(h, next, TransferStatus.POSTED);
      expect((await balanceOf(h, b.id)).posted).toBe(100n);
    } finally {
      await withSql(h, (sql) => sql.unsafe("drop trigger refuse_stuck on transactions.transfers; drop function transactions.refuse_stuck()"));
    }
  });
});

describe("a reversal held for review whose hold expires", () => {
  let short: TransactionsHarness;
  beforeAll(async () => {
    short = await startTransactionsHarness({ transactionsEnv: { RISK_DEADLINE_MS: "5000", REVIEW_HOLD_SECONDS: "1" } });
  });
  afterAll(() => short.stop());

  it("expires, and gives back what it set aside of the transfer it reverses", async () => {
    const [a, b] = [await openAccount(short), await openAccount(short)];
    await fund(short, a.id, 10_000n);
    const { transfer } = await short.transactions.createTransfer(transferRequest(a.id, b.id, 3_000n));
    const { rule } = await short.risk.createRule({
      rule: { name: "review reversals", kind: RuleKind.ASSESSMENT, expression: `transfer.kind == "reversal"`, action: RuleAction.REVIEW, enabled: true },
    });
    const { reversal } = await short.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id, amount: 1_000n });
    expect(reversal!.status).toBe(TransferStatus.HELD);
    await statusBecomes(short, reversal!.id, TransferStatus.EXPIRED);
    await short.risk.disableRule({ ruleId: rule!.id });
    expect(await balanceOf(short, b.id)).toMatchObject({ debitsPending: 0n, posted: 3_000n });
    const whole = await short.transactions.reverseTransfer({ requestId: newId(), transferId: transfer!.id });
    expect([whole.reversal!.status, whole.reversal!.amount?.amount]).toEqual([TransferStatus.POSTED, 3_000n]);
  });
});

describe("idempotency keys", () => {
  it("run again, rather than fail, when a key found taken is gone by the time it is read (pruned meanwhile)", async () => {
    const [requestId, id] = [newId(), newId()];
    await withStore((keys) => keys.run(requestId, "transfer", "fingerprint", [id], async () => {}));
    // The key deleted between the insert that found it taken and the read of it, once (a sequence
    // is not rolled back): a prune landing in that gap, as its transaction sees it.
    await withSql(h, (sql) =>
      sql.unsafe(`create sequence transactions.prune_once;
                  create function transactions.prune_now() returns trigger language plpgsql as $$
                    begin if nextval('transactions.prune_once') = 1 then delete from transactions.idempotency_keys where request_id = '${requestId}'; end if; return null; end $$;
                  create trigger prune_now after insert on transactions.idempotency_keys for each statement execute function transactions.prune_now()`),
    );
    try {
      const outcome = await withStore((keys) => keys.run(requestId, "transfer", "fingerprint", [newId()], async () => {}));
      // Run again, the key is there once more (the delete went with the first attempt): a replay.
      expect(outcome).toEqual({ transferIds: [id], replay: true });
    } finally {
      await withSql(h, (sql) => sql.unsafe("drop function transactions.prune_now() cascade; drop sequence transactions.prune_once"));
    }
  });

  it("keep the first answer stored under a key: a later one, even given at once, gets the first back", async () => {
    const [requestId, id] = [newId(), newId()];
    const [stored, kept] = await withStore(async (keys) => {
      await keys.run(requestId, "transfer", "fingerprint", [id], async () => {});
      const answers = ["first", "second", "third"].map((description) => [create(TransferSchema, { id, description })]);
      return [await Promise.all(answers.map((answer) => keys.recordAnswer(requestId, [id], answer))), await keys.answer(requestId)];
    });
    expect(stored.map((answer) => answer[0].description)).toEqual(["first", "first", "first"]);
    expect(kept?.map((t) => t.description)).toEqual(["first"]);
  });

  it("tell a replay to try again while its request is at work; once that request is gone without answering, the replay drives its transfer and stores the answer", async () => {
    const [a, b] = [await funded(10_000n), await openAccount(h)];
    const request = transferRequest(a.id, b.id, 400n, { transferId: newId() });
    // The request recorded with its transfer, as a replica does before it drives it: claimed, not answered yet.
    await withStore((keys, store) =>
      keys.run(request.requestId, "transfer", fingerprint(CreateTransferRequestSchema, create(CreateTransferRequestSchema, request)), [request.transferId], async (tx) => {
        await store.insert(tx, {
          id: request.transferId,
          requestId: request.requestId,
          kind: "transfer",
          status: "created",
          step: "assess",
          fromAccountId: a.id,
          toAccountId: b.id,
          amount: 400n,
          currency: "USD",
          leaseUntil: new Date(Date.now() + 3600_000),
        });
      }),
    );
    await expectRpcError(h.transactions.createTransfer(request), Status.ABORTED, "IDEMPOTENCY_KEY_IN_USE", "request_id");
    expect(await balanceOf(h, b.id)).toMatchObject({ posted: 0n, creditsPending: 0n });

    // Its replica died: the claim lapses, and the replay takes the transfer over.
    await withSql(h, (sql) => sql`update transactions.transfers set lease_until = now() - interval '1 second' where id = ${request.transferId}`);
    const replayed = await h.transactions.createTransfer(request);
    expect([replayed.transfer!.id, replayed.transfer!.status]).toEqual([request.transferId, TransferStatus.POSTED]);
    expect(await h.transactions.createTransfer(request)).toEqual(replayed);
    expect((await balanceOf(h, b.id)).posted).toBe(400n);
    const entries = await withSql(h, (sql) => sql`select count(*)::int as n from account.entries where transfer_id = ${request.transferId}`);
    expect(entries[0].n).toBe(2);
  });

  it("are kept for their time to live, then pruned", async () => {
    const [a, b] = [await funded(1_000n), await openAccount(h)];
    await h.transactions.createTransfer(transferRequest(a.id, b.id, 1n));
    const database = connectDatabase({ url: h.db.url, poolSize: 1, log: testLogger(), applicationName: "test" }, schema);
    try {
      const keys = new IdempotencyKeys(database.db, 24);
      const before = await rowsIn(h, "idempotency_keys");
      await keys.prune(new Date(Date.now() + 23 * 3600_000));
      expect(await rowsIn(h, "idempotency_keys")).toBe(before);
      await keys.prune(new Date(Date.now() + 25 * 3600_000));
      expect(await rowsIn(h, "idempotency_keys")).toBe(0);
    } finally {
      await database.close();
    }
  });
});
