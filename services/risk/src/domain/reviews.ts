import { create } from "@bufbuild/protobuf";
import { and, asc, eq, gt } from "drizzle-orm";
import { ReviewResolvedSchema } from "../../../../gen/tally/events/v1/events_pb";
import type { Review } from "../../../../gen/tally/risk/v1/risk_pb";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import { appendEvents, type OutboxWriter } from "../../../../platform/outbox/append";
import { cursorId, decodePageToken, pageOf, pageSize } from "../../../../platform/paging";
import { requireId, requireText } from "../../../../platform/validation";
import { reviews, type ReviewRow } from "../db/schema";
import type { RiskDb } from "../db/types";
import { reviewMessage } from "../proto";

type Status = ReviewRow["status"];

/** The analysts' queue: transfers assessed as review, until someone approves or declines them. */
export class Reviews {
  constructor(
    private readonly db: RiskDb,
    private readonly outbox: OutboxWriter,
    private readonly afterCommit: () => void = () => {},
  ) {}

  /** Oldest first (review ids are time-ordered), filtered by status and source account. */
  async list(status: Status | undefined, accountId: string, size: number, token: string): Promise<{ items: Review[]; nextPageToken: string }> {
    const limit = pageSize(size);
    const cursor = decodePageToken(token, ["after"]);
    const rows = await this.db
      .select()
      .from(reviews)
      .where(
        and(
          status ? eq(reviews.status, status) : undefined,
          accountId ? eq(reviews.accountId, requireId(accountId, "account_id")) : undefined,
          cursor ? gt(reviews.id, cursorId(cursor.after)) : undefined,
        ),
      )
      .orderBy(asc(reviews.id))
      .limit(limit + 1);
    const page = pageOf(rows, limit, (last) => ({ after: last.id }));
    return { items: page.items.map(reviewMessage), nextPageToken: page.nextPageToken };
  }

  async get(reviewId: string): Promise<Review> {
    return reviewMessage(await this.row(requireId(reviewId, "review_id")));
  }

  /** Approves or declines an open review, once; the resolution is published for transactions to act on. */
  async resolve(reviewId: string, resolution: Exclude<Status, "open"> | undefined, noteInput: string, resolvedBy: string): Promise<Review> {
    const id = requireId(reviewId, "review_id");
    if (!resolution) throw new DomainError(ErrorReason.INVALID_FIELD, "resolution must be APPROVED or DECLINED", "resolution");
    const note = requireText(noteInput, "note", 2000);
    const resolved = await this.db.transaction(async (tx) => {
      const [current] = await tx.select().from(reviews).where(eq(reviews.id, id)).for("update");
      if (!current) throw new DomainError(ErrorReason.REVIEW_NOT_FOUND, `review ${id} not found`, "review_id");
      if (current.status !== "open") {
        // Asking for the resolution it already has is a safe retry; the other one is a conflict.
        if (current.status === resolution) return { row: current, changed: false };
        throw new DomainError(ErrorReason.REVIEW_ALREADY_RESOLVED, `review ${id} was already ${current.status}`, "review_id");
      }
      const [row] = await tx
        .update(reviews)
        .set({ status: resolution, note, resolvedBy: requireText(resolvedBy, "resolved_by", 200), resolvedAt: new Date() })
        .where(eq(reviews.id, id))
        .returning();
      const review = reviewMessage(row);
      await appendEvents(tx, this.outbox, [{ subjectId: row.transferId, payload: { case: "reviewResolved", value: create(ReviewResolvedSchema, { review }) } }]);
      return { row, changed: true };
    });
    if (resolved.changed) this.afterCommit();
    return reviewMessage(resolved.row);
  }

  private async row(id: string): Promise<ReviewRow> {
    const [row] = await this.db.select().from(reviews).where(eq(reviews.id, id));
    if (!row) throw new DomainError(ErrorReason.REVIEW_NOT_FOUND, `review ${id} not found`, "review_id");
    return row;
  }
}
