import { status as Status } from "@grpc/grpc-js";
import { PostingMode } from "../../../gen/tally/account/v1/ledger_pb";
import { RuleAction, RuleKind } from "../../../gen/tally/risk/v1/risk_pb";
import { RiskDecision, TransferKind } from "../../../gen/tally/transactions/v1/transfer_pb";
import { reasonName } from "../../../platform/errors";
import { newId } from "../../../platform/ids";
import { expectRpcError, fund, openAccount, profileWhen, riskRows, transferToAssess } from "./fixtures";
import { startRiskHarness, type RiskHarness } from "./harness";

let h: RiskHarness;
beforeAll(async () => {
  h = await startRiskHarness();
});
afterAll(() => h.stop());

const decisionOf = async (from: string, to: string, amount: bigint, extra = {}) => {
  const { assessment } = await h.risk.assessTransfer({ transfer: transferToAssess(from, to, amount, extra) });
  return assessment!;
};
const firedRules = (a: { hits: { ruleName: string }[] }) => a.hits.map((x) => x.ruleName).sort();

describe("AssessTransfer with the default rules", () => {
  it("approves an ordinary transfer, with no rule fired", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    const assessment = await decisionOf(a.id, b.id, 5_000n);
    expect([assessment.decision, assessment.score, assessment.hits]).toEqual([RiskDecision.APPROVE, 0, []]);
    expect(assessment.durationMicros).toBeGreaterThan(0n);
  });

  it("sends a large amount to review and opens a review for it", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    const assessment = await decisionOf(a.id, b.id, 1_000_000n);
    expect(assessment.decision).toBe(RiskDecision.REVIEW);
    // The account is new, so the young-account rule fires too.
    expect(firedRules(assessment)).toEqual(["large amount", "young account, large amount"]);
    expect(assessment.hits.every((x) => x.ruleVersion === 1)).toBe(true);
    const { reviews } = await h.risk.listReviews({ accountId: a.id });
    expect(reviews.map((r) => [r.transferId, r.assessmentId])).toEqual([[assessment.transferId, assessment.id]]);
  });

  it("declines a very large amount", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    const assessment = await decisionOf(a.id, b.id, 100_000_000n);
    expect(assessment.decision).toBe(RiskDecision.DECLINE);
    expect(firedRules(assessment)).toContain("very large amount");
  });

  it("sends a young account moving 1,000.00 to review, but not a deposit from the bank", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    expect(firedRules(await decisionOf(a.id, b.id, 100_000n))).toEqual(["young account, large amount"]);
    const { account: bank } = await h.accounts.getSystemAccount({ currency: "USD" });
    const deposit = await decisionOf(bank!.id, a.id, 100_000n, { kind: TransferKind.DEPOSIT });
    expect(deposit.decision).toBe(RiskDecision.APPROVE);
  });

  it("declines a blocked counterparty once an analyst adds it to the rule", async () => {
    const [a, blocked] = [await openAccount(h), await openAccount(h)];
    expect((await decisionOf(a.id, blocked.id, 100n)).decision).toBe(RiskDecision.APPROVE);
    const { rules } = await h.risk.listRules({ kind: RuleKind.ASSESSMENT });
    const rule = rules.find((r) => r.name === "blocked counterparty")!;
    const { rule: updated } = await h.risk.updateRule({
      ruleId: rule.id,
      rule: { ...rule, expression: `transfer.to_account_id in ["${blocked.id}"] || to_account.customer_id in []` },
    });
    expect(updated!.version).toBe(2);
    const assessment = await decisionOf(a.id, blocked.id, 100n);
    expect(assessment.decision).toBe(RiskDecision.DECLINE);
    expect(assessment.hits.map((x) => [x.ruleName, x.ruleVersion])).toEqual([["blocked counterparty", 2]]);
  });

  it("sends a customer sending many transfers within a minute to review (velocity, from ledger events)", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 10_000n);
    const { transfers } = { transfers: Array.from({ length: 10 }, () => ({ id: newId(), debitAccountId: a.id, creditAccountId: b.id, amount: 1n, currency: "USD", mode: 1 })) };
    await h.ledger.postTransfers({ transfers });
    await profileWhen(h, a.id, (p) => p!.lastMinute!.debitCount === 10n);
    const assessment = await decisionOf(a.id, b.id, 1n);
    expect(assessment.decision).toBe(RiskDecision.REVIEW);
    expect(firedRules(assessment)).toEqual(["velocity"]);
  });

  it("counts holds towards velocity when they are made: ten authorizations in a minute send the next to review", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 10_000n);
    const transfers = Array.from({ length: 10 }, () => ({ id: newId(), debitAccountId: a.id, creditAccountId: b.id, amount: 1n, currency: "USD", mode: PostingMode.PENDING }));
    await h.ledger.postTransfers({ transfers });
    await profileWhen(h, a.id, (p) => p!.lastMinute!.debitCount === 10n);
    const assessment = await decisionOf(a.id, b.id, 1n);
    expect([assessment.decision, firedRules(assessment)]).toEqual([RiskDecision.REVIEW, ["velocity"]]);
  });

  it("sends to review a transfer touching an account it cannot learn of, which the account rules cannot judge", async () => {
    const known = await openAccount(h);
    // Neither in risk's view nor known to the account service (as when that service does not answer in time).
    for (const [from, to] of [[newId(), known.id], [known.id, newId()]]) {
      const assessment = await decisionOf(from, to, 100n);
      expect([assessment.decision, firedRules(assessment)]).toEqual([RiskDecision.REVIEW, ["account unknown to risk"]]);
    }
  });

  it("adds up scores against the thresholds", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    for (const name of ["night-time", "new device"]) {
      await h.risk.createRule({
        rule: { name, kind: RuleKind.ASSESSMENT, expression: `transfer.metadata["${name}"] == "yes"`, action: RuleAction.ADD_SCORE, score: 30, enabled: true },
      });
    }
    const one = await decisionOf(a.id, b.id, 100n, { metadata: { "night-time": "yes" } });
    expect([one.decision, one.score]).toEqual([RiskDecision.APPROVE, 30]);
    const both = await decisionOf(a.id, b.id, 100n, { metadata: { "night-time": "yes", "new device": "yes" } });
    expect([both.decision, both.score]).toEqual([RiskDecision.REVIEW, 60]);
  });
});

describe("attempts risk declined", () => {
  it("count in the customer's account that sent them, each once however often it is asked, and rules can act on them", async () => {
    const [a, b, c] = [await openAccount(h), await openAccount(h), await openAccount(h)];
    // Three declined (the first asked three times, twice at once), one approved; none from b or c.
    const declined = Array.from({ length: 3 }, () => transferToAssess(a.id, b.id, 100_000_000n));
    const answers = await Promise.all([...declined, declined[0], declined[0]].map((transfer) => h.risk.assessTransfer({ transfer })));
    expect(answers.map((x) => x.assessment?.decision)).toEqual(answers.map(() => RiskDecision.DECLINE));
    expect((await decisionOf(a.id, b.id, 100n)).decision).toBe(RiskDecision.APPROVE);
    const windows = async (accountId: string) => {
      const { profile } = await h.risk.getRiskProfile({ accountId });
      return [profile!.lastMinute!.declinedCount, profile!.lastHour!.declinedCount, profile!.lastDay!.declinedCount];
    };
    expect(await windows(a.id)).toEqual([3n, 3n, 3n]);
    expect(await windows(b.id)).toEqual([0n, 0n, 0n]);
    // A deposit declined was the bank's to send: it counts against neither the bank's account nor the customer's.
    const { account: bank } = await h.accounts.getSystemAccount({ currency: "USD" });
    expect((await decisionOf(bank!.id, c.id, 100_000_000n, { kind: TransferKind.DEPOSIT })).decision).toBe(RiskDecision.DECLINE);
    expect([await windows(bank!.id), await windows(c.id)]).toEqual([
      [0n, 0n, 0n],
      [0n, 0n, 0n],
    ]);

    // An account probing for the limits is stopped, whatever it sends next; another is not.
    const { rule } = await h.risk.createRule({
      rule: { name: "probing", kind: RuleKind.ASSESSMENT, expression: 'from_account.kind == "customer" && profile.last_hour.declined_count >= 3', action: RuleAction.DECLINE, priority: 5, enabled: true },
    });
    try {
      const next = await decisionOf(a.id, b.id, 100n);
      expect([next.decision, firedRules(next)]).toEqual([RiskDecision.DECLINE, ["probing"]]);
      expect((await decisionOf(c.id, b.id, 100n)).decision).toBe(RiskDecision.APPROVE);
      expect(await windows(a.id)).toEqual([4n, 4n, 4n]);
    } finally {
      await h.risk.disableRule({ ruleId: rule!.id });
    }
  });
});

describe("AssessTransfer bookkeeping", () => {
  it("assesses a transfer once: asking again, even concurrently, returns the stored decision", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    const transfer = transferToAssess(a.id, b.id, 2_000_000n);
    const replies = await Promise.all(Array.from({ length: 10 }, () => h.risk.assessTransfer({ transfer })));
    expect(new Set(replies.map((r) => r.assessment!.id)).size).toBe(1);
    const { reviews } = await h.risk.listReviews({ accountId: a.id });
    expect(reviews).toHaveLength(1);
    const stored = await h.risk.getAssessment({ assessmentId: replies[0].assessment!.id });
    expect(stored.assessment).toEqual(replies[0].assessment);
    expect(stored.assessment!.transfer?.amount?.amount).toBe(2_000_000n);
  });

  it("refuses another transfer under an id already assessed", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    const transfer = transferToAssess(a.id, b.id, 10n);
    const { assessment } = await h.risk.assessTransfer({ transfer });
    expect(assessment!.decision).toBe(RiskDecision.APPROVE);
    await expectRpcError(
      h.risk.assessTransfer({ transfer: { ...transfer, amount: { amount: 500_000_000n, currency: "USD" } } }),
      Status.ALREADY_EXISTS,
      "EXISTS_WITH_DIFFERENT_FIELDS",
      "transfer.id",
    );
  });

  it("judges an account it has not heard of yet by asking the account service", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    // Assessed at once, before risk may have consumed the account_opened events.
    const assessment = await decisionOf(a.id, b.id, 100_000n);
    expect(firedRules(assessment)).toEqual(["young account, large amount"]);
  });

  const bad: [string, () => object, string, string][] = [
    ["no transfer", () => ({}), "MISSING_FIELD", "transfer"],
    ["a malformed transfer id", () => ({ transfer: { ...transferToAssess(newId(), newId(), 1n), id: "x" } }), "INVALID_ID", "transfer.id"],
    ["a malformed account id", () => ({ transfer: transferToAssess("nope", newId(), 1n) }), "INVALID_ID", "transfer.from_account_id"],
    ["the same account twice", () => { const id = newId(); return { transfer: transferToAssess(id, id, 1n) }; }, "ACCOUNTS_MUST_BE_DIFFERENT", "transfer.to_account_id"],
    ["no amount", () => ({ transfer: { ...transferToAssess(newId(), newId(), 1n), amount: undefined } }), "MISSING_FIELD", "transfer.amount"],
    ["a zero amount", () => ({ transfer: transferToAssess(newId(), newId(), 0n) }), "AMOUNT_MUST_BE_POSITIVE", "transfer.amount.amount"],
    ["a negative amount", () => ({ transfer: transferToAssess(newId(), newId(), -1n) }), "AMOUNT_MUST_BE_POSITIVE", "transfer.amount.amount"],
    ["an unknown currency", () => ({ transfer: transferToAssess(newId(), newId(), 1n, { amount: { amount: 1n, currency: "XYZ" } }) }), "UNKNOWN_CURRENCY", "transfer.amount.currency"],
    ["no kind", () => ({ transfer: transferToAssess(newId(), newId(), 1n, { kind: TransferKind.UNSPECIFIED }) }), "INVALID_FIELD", "transfer.kind"],
    ["an unknown kind", () => ({ transfer: transferToAssess(newId(), newId(), 1n, { kind: 99 as TransferKind }) }), "INVALID_FIELD", "transfer.kind"],
    ["a NUL in metadata", () => ({ transfer: transferToAssess(newId(), newId(), 1n, { metadata: { note: "a\u0000" } }) }), "INVALID_FIELD", "transfer.metadata.note"],
    ["metadata too large for the event stream", () => ({ transfer: transferToAssess(newId(), newId(), 1n, { metadata: { big: "x".repeat(1_500_000) } }) }), "INVALID_FIELD", "transfer.metadata.big"],
    ["a NUL in the description", () => ({ transfer: transferToAssess(newId(), newId(), 1n, { description: "\u0000" }) }), "INVALID_FIELD", "transfer.description"],
    ["a request id too long", () => ({ transfer: transferToAssess(newId(), newId(), 1n, { requestId: "r".repeat(200) }) }), "INVALID_FIELD", "transfer.request_id"],
    // Fields risk only stores: each must still fit the database and the JSON of the event stream.
    ["a hold expiry after the year 9999", () => ({ transfer: transferToAssess(newId(), newId(), 1n, { holdExpiresAt: { seconds: 253_402_300_800n } }) }), "INVALID_FIELD", "transfer.hold_expires_at"],
    ["a creation time with negative nanos", () => ({ transfer: transferToAssess(newId(), newId(), 1n, { createdAt: { seconds: 0n, nanos: -1 } }) }), "INVALID_FIELD", "transfer.created_at"],
    ["a malformed id of the transfer reversed", () => ({ transfer: transferToAssess(newId(), newId(), 1n, { reversesTransferId: "x\u0000" }) }), "INVALID_ID", "transfer.reverses_transfer_id"],
    ["a NUL in an earlier decision's reason", () => ({ transfer: transferToAssess(newId(), newId(), 1n, { risk: { reasons: ["ok", "a\u0000"] } }) }), "INVALID_FIELD", "transfer.risk.reasons[1]"],
    ["a malformed review id in an earlier decision", () => ({ transfer: transferToAssess(newId(), newId(), 1n, { risk: { reviewId: "r-1" } }) }), "INVALID_ID", "transfer.risk.review_id"],
  ];
  it.each(bad)("refuses %s with a reason and the field, storing nothing", async (_name, request, reason, field) => {
    const before = [await riskRows(h, "assessments"), await riskRows(h, "reviews"), await riskRows(h, "outbox")];
    await expectRpcError(h.risk.assessTransfer(request()), Status.INVALID_ARGUMENT, reason, field);
    expect([await riskRows(h, "assessments"), await riskRows(h, "reviews"), await riskRows(h, "outbox")]).toEqual(before);
  });

  it("answers NOT_FOUND for an unknown assessment", async () => {
    await expectRpcError(h.risk.getAssessment({ assessmentId: newId() }), Status.NOT_FOUND, "ASSESSMENT_NOT_FOUND", "assessment_id");
  });
});

describe("AssessTransfers: several transfers in one call", () => {
  it("decides each on its own and stores each once, in one call: decisions, a refusal, a replay and a review", async () => {
    const [a, b, c] = [await openAccount(h), await openAccount(h), await openAccount(h)];
    const assessedBefore = transferToAssess(a.id, b.id, 10n);
    const { assessment: earlier } = await h.risk.assessTransfer({ transfer: assessedBefore });
    const ordinary = transferToAssess(a.id, b.id, 5_000n);
    const large = transferToAssess(c.id, a.id, 1_000_000n);
    const before = [await riskRows(h, "assessments"), await riskRows(h, "reviews")];
    const { results } = await h.risk.assessTransfers({
      transfers: [
        ordinary,
        { ...transferToAssess(a.id, b.id, 1n), amount: undefined },
        assessedBefore,
        large,
        { ...assessedBefore, amount: { amount: 500_000_000n, currency: "USD" } },
        ordinary,
      ],
    });
    expect(results.map((r) => [r.index, r.assessment?.decision, r.errorReason === 0 ? "" : reasonName(r.errorReason), r.errorField])).toEqual([
      [0, RiskDecision.APPROVE, "", ""],
      [1, undefined, "MISSING_FIELD", "transfer.amount"],
      [2, RiskDecision.APPROVE, "", ""],
      [3, RiskDecision.REVIEW, "", ""],
      [4, undefined, "EXISTS_WITH_DIFFERENT_FIELDS", "transfer.id"],
      [5, RiskDecision.APPROVE, "", ""],
    ]);
    // The replay got the stored decision; the transfer named twice, one assessment.
    expect(results[2].assessment!.id).toBe(earlier!.id);
    expect(results[5].assessment!.id).toBe(results[0].assessment!.id);
    expect([await riskRows(h, "assessments"), await riskRows(h, "reviews")]).toEqual([before[0] + 2, before[1] + 1]);
    const { reviews } = await h.risk.listReviews({ accountId: c.id });
    expect(reviews.map((r) => [r.transferId, r.assessmentId])).toEqual([[large.id, results[3].assessment!.id]]);
    expect((await h.risk.getAssessment({ assessmentId: results[0].assessment!.id })).assessment).toEqual(results[0].assessment);
  });

  it("decides the same transfers sent in two calls at once, in opposite orders, once each and without a deadlock", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    for (let round = 0; round < 3; round++) {
      const transfers = Array.from({ length: 50 }, () => transferToAssess(a.id, b.id, 10n));
      const [forward, backward] = await Promise.all([h.risk.assessTransfers({ transfers }), h.risk.assessTransfers({ transfers: [...transfers].reverse() })]);
      const ids = (results: typeof forward.results) => results.map((r) => r.assessment?.id);
      expect(ids(forward.results)).toEqual(ids(backward.results).reverse());
      expect(ids(forward.results).every((id) => id !== undefined)).toBe(true);
    }
  });

  it("judges each transfer by its own sender's profile", async () => {
    const [busy, quiet, b] = [await openAccount(h), await openAccount(h), await openAccount(h)];
    await fund(h, busy.id, 10_000n);
    await fund(h, quiet.id, 10_000n);
    const posting = (from: string) => ({ id: newId(), debitAccountId: from, creditAccountId: b.id, amount: 1n, currency: "USD", mode: 1 });
    await h.ledger.postTransfers({ transfers: [...Array.from({ length: 10 }, () => posting(busy.id)), posting(quiet.id)] });
    await profileWhen(h, busy.id, (p) => p!.lastMinute!.debitCount === 10n);
    await profileWhen(h, quiet.id, (p) => p!.lastMinute!.debitCount === 1n);
    const { results } = await h.risk.assessTransfers({ transfers: [transferToAssess(quiet.id, b.id, 1n), transferToAssess(busy.id, b.id, 1n), transferToAssess(quiet.id, b.id, 2n)] });
    expect(results.map((r) => [r.assessment!.decision, firedRules(r.assessment!)])).toEqual([
      [RiskDecision.APPROVE, []],
      [RiskDecision.REVIEW, ["velocity"]],
      [RiskDecision.APPROVE, []],
    ]);
  });

  it("refuses an empty call and one over the limit", async () => {
    await expectRpcError(h.risk.assessTransfers({ transfers: [] }), Status.INVALID_ARGUMENT, "BATCH_EMPTY", "transfers");
    const many = Array.from({ length: 1001 }, () => transferToAssess(newId(), newId(), 1n));
    await expectRpcError(h.risk.assessTransfers({ transfers: many }), Status.INVALID_ARGUMENT, "BATCH_TOO_LARGE", "transfers");
  });
});
