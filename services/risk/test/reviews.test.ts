import { status as Status } from "@grpc/grpc-js";
import { Metadata } from "@grpc/grpc-js";
import { ReviewStatus } from "../../../gen/tally/risk/v1/risk_pb";
import { RiskDecision } from "../../../gen/tally/transactions/v1/transfer_pb";
import { newId } from "../../../platform/ids";
import { eventually, readEvents } from "../../../test/support/events";
import { expectRpcError, openAccount, riskRows, transferToAssess } from "./fixtures";
import { startRiskHarness, type RiskHarness } from "./harness";

let h: RiskHarness;
beforeAll(async () => {
  h = await startRiskHarness();
});
afterAll(() => h.stop());

/** Assesses a large transfer, which the default rules send to review; returns its review. */
async function openReview(from: string, to: string) {
  const { assessment } = await h.risk.assessTransfer({ transfer: transferToAssess(from, to, 5_000_000n) });
  expect(assessment!.decision).toBe(RiskDecision.REVIEW);
  const { reviews } = await h.risk.listReviews({ accountId: from, status: ReviewStatus.OPEN, pageSize: 500 });
  return reviews.find((r) => r.transferId === assessment!.transferId)!;
}

it("lists the queue by status and account, oldest first, in pages", async () => {
  const [a, b, c] = [await openAccount(h), await openAccount(h), await openAccount(h)];
  const opened = [await openReview(a.id, c.id), await openReview(a.id, c.id), await openReview(a.id, c.id), await openReview(b.id, c.id)];
  const seen: string[] = [];
  let pageToken = "";
  do {
    const page = await h.risk.listReviews({ accountId: a.id, pageSize: 2, pageToken });
    seen.push(...page.reviews.map((r) => r.id));
    pageToken = page.nextPageToken;
  } while (pageToken);
  expect(seen).toEqual(opened.slice(0, 3).map((r) => r.id));
  const open = await h.risk.listReviews({ status: ReviewStatus.OPEN, pageSize: 500 });
  expect(open.reviews.map((r) => r.id)).toEqual(expect.arrayContaining(opened.map((r) => r.id)));
  expect(opened[0].hits.map((x) => x.ruleName)).toContain("large amount");
  expect(opened[0].transfer?.amount?.amount).toBe(5_000_000n);
});

it("resolves a review once, naming the analyst, and publishes the resolution", async () => {
  const [a, b] = [await openAccount(h), await openAccount(h)];
  const review = await openReview(a.id, b.id);
  const metadata = new Metadata();
  metadata.set("tally-principal", "analyst-7");
  const { review: approved } = await h.risk.resolveReview({ reviewId: review.id, resolution: ReviewStatus.APPROVED, note: "known customer" }, { metadata });
  expect(approved).toMatchObject({ status: ReviewStatus.APPROVED, note: "known customer", resolvedBy: "analyst-7" });
  expect(approved!.resolvedAt).toBeDefined();
  // The same resolution again is a safe retry; the other one is refused.
  const again = await h.risk.resolveReview({ reviewId: review.id, resolution: ReviewStatus.APPROVED });
  expect(again.review!.note).toBe("known customer");
  await expectRpcError(h.risk.resolveReview({ reviewId: review.id, resolution: ReviewStatus.DECLINED }), Status.FAILED_PRECONDITION, "REVIEW_ALREADY_RESOLVED", "review_id");
  expect((await h.risk.getReview({ reviewId: review.id })).review!.status).toBe(ReviewStatus.APPROVED);

  const resolved = await eventually(async () => {
    const events = (await readEvents(h.stream.name)).filter((e) => e.envelope.type === "review_resolved" && e.envelope.subjectId === review.transferId);
    return events.length > 0 ? events : undefined;
  });
  expect(resolved).toHaveLength(1);
  const payload = resolved[0].envelope.payload;
  expect(payload.case === "reviewResolved" && payload.value.review?.status).toBe(ReviewStatus.APPROVED);
  expect(resolved[0].subject).toBe(`${h.stream.subjectPrefix}.risk.review_resolved`);
});

describe("bad review input changes nothing", () => {
  const bad: [string, () => Promise<unknown>, Status, string, string][] = [
    ["an unknown review", () => h.risk.resolveReview({ reviewId: newId(), resolution: ReviewStatus.APPROVED }), Status.NOT_FOUND, "REVIEW_NOT_FOUND", "review_id"],
    ["a malformed id", () => h.risk.getReview({ reviewId: "r-1" }), Status.INVALID_ARGUMENT, "INVALID_ID", "review_id"],
    ["no resolution", () => h.risk.resolveReview({ reviewId: newId() }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "resolution"],
    ["OPEN as a resolution", () => h.risk.resolveReview({ reviewId: newId(), resolution: ReviewStatus.OPEN }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "resolution"],
    ["a note too long", () => h.risk.resolveReview({ reviewId: newId(), resolution: ReviewStatus.DECLINED, note: "n".repeat(2001) }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "note"],
    ["a forged page token", () => h.risk.listReviews({ pageToken: "abc" }), Status.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN", "page_token"],
    ["an unknown status filter", () => h.risk.listReviews({ status: 7 as ReviewStatus }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "status"],
  ];
  it.each(bad)("%s", async (_name, call, code, reason, field) => {
    const before = [await riskRows(h, "reviews"), await riskRows(h, "outbox")];
    await expectRpcError(call(), code, reason, field);
    expect([await riskRows(h, "reviews"), await riskRows(h, "outbox")]).toEqual(before);
  });
});
