import { create, toJson } from "@bufbuild/protobuf";
import { metrics, trace } from "@opentelemetry/api";
import { eq, sql } from "drizzle-orm";
import type { AccountFacts, Assessment } from "../../../../gen/tally/risk/v1/risk_pb";
import { AssessmentCompletedSchema, ReviewOpenedSchema } from "../../../../gen/tally/events/v1/events_pb";
import { TransferKind, TransferSchema, type RiskOutcome, type Transfer } from "../../../../gen/tally/transactions/v1/transfer_pb";
import { insertRows } from "../../../../platform/db/recordset";
import { inLockOrder } from "../../../../platform/db/lock-order";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import { newId } from "../../../../platform/ids";
import { appendEvents, type NewEvent, type OutboxWriter } from "../../../../platform/outbox/append";
import { requireCurrency, requireId, requireMetadata, requireText, requireTimestamp } from "../../../../platform/validation";
import { assessments, reviews, type StoredHit } from "../db/schema";
import type { RiskDb } from "../db/types";
import { assessmentMessage, reviewMessage } from "../proto";
import { decide, type Thresholds } from "./decision";
import { transferFacts, type AccountFactsSource } from "./facts";
import type { Profiles } from "./profiles";
import type { RuleSet } from "./rule-set";

/** One transfer's assessment, or why it was refused. */
export type AssessmentResult = { assessment: Assessment } | { error: DomainError };

/**
 * Decides whether a money movement may go ahead. Each transfer id has one
 * decision: it is stored with the rules that fired (and a review opened when
 * it says review); asking again about the same transfer returns the stored
 * decision, and about another transfer under the same id is refused.
 */
export class Assessor {
  private readonly decisions = metrics.getMeter("tally.risk").createCounter("risk.decisions", {
    unit: "{assessment}",
    description: "Transfers assessed, by decision",
  });

  constructor(
    private readonly db: RiskDb,
    private readonly ruleSet: RuleSet,
    private readonly accounts: AccountFactsSource,
    private readonly profiles: Profiles,
    private readonly outbox: OutboxWriter,
    private readonly thresholds: Thresholds,
    private readonly afterCommit: () => void = () => {},
  ) {}

  async assess(transfer: Transfer | undefined, deadline?: Date): Promise<Assessment> {
    const [result] = await this.assessMany([transfer], deadline);
    if ("error" in result) throw result.error;
    return result.assessment;
  }

  /**
   * Decides several transfers at once, each on its own (a transfer that is bad input gets its
   * error, the others their decisions): the facts of every account in one query, and every
   * assessment, review and event stored in one transaction.
   */
  async assessMany(transfers: (Transfer | undefined)[], deadline?: Date): Promise<AssessmentResult[]> {
    const results: AssessmentResult[] = new Array(transfers.length);
    const valid: { index: number; transfer: Transfer }[] = [];
    transfers.forEach((transfer, index) => {
      try {
        valid.push({ index, transfer: validTransfer(transfer) });
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        results[index] = { error: err };
      }
    });
    if (valid.length === 0) return results;

    // A transfer assessed before is decided again but stored once: the insert below keeps the first decision.
    const started = process.hrtime.bigint();
    const now = new Date();
    const accountIds = [...new Set(valid.flatMap(({ transfer }) => [transfer.fromAccountId, transfer.toAccountId]))];
    const sources = [...new Set(valid.map(({ transfer }) => transfer.fromAccountId))];
    const [facts, profiles] = await Promise.all([
      this.accounts.facts(accountIds, deadline, now),
      this.profiles.profiles(sources, now),
    ]);
    const factsOf = new Map(accountIds.map((id, i) => [id, facts[i]]));
    const profileOf = new Map(sources.map((id, i) => [id, profiles[i]]));
    const decided = await Promise.all(
      valid.map(async ({ index, transfer }) => {
        const evaluated = await this.ruleSet.evaluate("assessment", {
          transfer: transferFacts(transfer),
          from_account: factsOf.get(transfer.fromAccountId)!,
          to_account: factsOf.get(transfer.toAccountId)!,
          profile: profileOf.get(transfer.fromAccountId)!,
        });
        // A rule that could not be evaluated is kept with the assessment when it decides it (DECLINE or
        // REVIEW: it sends the transfer to review); a score it could not add is only counted and logged.
        const hits = evaluated.filter((hit) => !hit.error || hit.action !== "add_score");
        return { index, transfer, hits, id: newId(), transferJson: toJson(TransferSchema, transfer), ...decide(hits, this.thresholds) };
      }),
    );
    const durationMicros = (process.hrtime.bigint() - started) / 1000n;

    // Two calls naming the same transfers in other orders wait for one another on each one's assessment.
    const inIdOrder = inLockOrder(decided, (d) => d.transfer.id);
    const stored = await this.db.transaction(async (tx) => {
      const rows = await insertRows(
        tx,
        assessments,
        inIdOrder.map((d) => ({ id: d.id, transferId: d.transfer.id, decision: d.decision, score: d.score, hits: d.hits, transfer: d.transferJson, durationMicros })),
        { onConflict: sql`do nothing`, returning: true },
      );
      // A transfer assessed before (or twice in this batch) keeps its first assessment: found below.
      const inserted = new Map(rows.map((row) => [row.id, row]));
      const fresh = decided.flatMap((d) => (inserted.has(d.id) ? [{ ...d, assessment: assessmentMessage(inserted.get(d.id)!) }] : []));
      const events: NewEvent[] = fresh.map((d) => ({ subjectId: d.transfer.id, payload: { case: "assessmentCompleted", value: create(AssessmentCompletedSchema, { assessment: d.assessment }) } }));
      // An attempt declined is one the account made: rules see it in its profile's windows.
      const declined = fresh.filter((d) => d.decision === "decline" && startedByCustomer(d.transfer, factsOf.get(d.transfer.fromAccountId)!));
      await this.profiles.recordDeclines(tx, declined.map((d) => ({ accountId: d.transfer.fromAccountId, at: now })));
      const toReview = fresh.filter((d) => d.decision === "review");
      if (toReview.length > 0) {
        const opened = await tx
          .insert(reviews)
          .values(toReview.map((d) => ({ id: newId(), transferId: d.transfer.id, assessmentId: d.id, accountId: d.transfer.fromAccountId, status: "open" as const, hits: d.hits, transfer: d.transferJson })))
          .returning();
        for (const review of opened) events.push({ subjectId: review.id, payload: { case: "reviewOpened", value: create(ReviewOpenedSchema, { review: reviewMessage(review) }) } });
      }
      if (events.length > 0) await appendEvents(tx, this.outbox, events);
      return fresh;
    });
    if (stored.length > 0) this.afterCommit();
    for (const d of stored) {
      results[d.index] = { assessment: d.assessment };
      this.decisions.add(1, { decision: d.decision });
    }
    await Promise.all(
      decided
        .filter((d) => results[d.index] === undefined)
        .map(async (d) => {
          try {
            results[d.index] = { assessment: await this.earlier(d.transfer) };
          } catch (err) {
            if (!(err instanceof DomainError)) throw err;
            results[d.index] = { error: err };
          }
        }),
    );
    annotate(decided, transfers.length);
    return results;
  }

  async get(assessmentId: string): Promise<Assessment> {
    const id = requireId(assessmentId, "assessment_id");
    const [row] = await this.db.select().from(assessments).where(eq(assessments.id, id));
    if (!row) throw new DomainError(ErrorReason.ASSESSMENT_NOT_FOUND, `assessment ${id} not found`, "assessment_id");
    return assessmentMessage(row);
  }

  /** The stored assessment of a transfer assessed before: the same transfer, or a refusal. */
  private async earlier(transfer: Transfer): Promise<Assessment> {
    const [row] = await this.db.select().from(assessments).where(eq(assessments.transferId, transfer.id));
    const assessment = assessmentMessage(row);
    const before = assessment.transfer;
    const same =
      before?.fromAccountId === transfer.fromAccountId &&
      before?.toAccountId === transfer.toAccountId &&
      before?.kind === transfer.kind &&
      before?.amount?.amount === transfer.amount?.amount &&
      before?.amount?.currency === transfer.amount?.currency;
    if (!same) {
      throw new DomainError(ErrorReason.EXISTS_WITH_DIFFERENT_FIELDS, `transfer ${transfer.id} was assessed with other fields`, "transfer.id");
    }
    return assessment;
  }
}

/**
 * The decisions on the caller's span: for one transfer, its fields and decision as attributes and
 * each rule that fired as an event; for several, an event per transfer with the same attributes.
 */
function annotate(decided: { transfer: Transfer; decision: string; score: number; hits: StoredHit[] }[], asked: number): void {
  const span = trace.getActiveSpan();
  if (!span?.isRecording()) return;
  const attributesOf = ({ transfer, decision, score }: (typeof decided)[number]) => ({
    "tally.transfer.id": transfer.id,
    "tally.account.from_id": transfer.fromAccountId,
    "tally.account.to_id": transfer.toAccountId,
    "tally.amount": String(transfer.amount?.amount ?? 0n),
    "tally.currency": transfer.amount?.currency ?? "",
    "tally.risk.decision": decision,
    "tally.risk.score": score,
  });
  if (asked > 1) {
    span.setAttribute("tally.risk.batch_size", asked);
    for (const d of decided) {
      const fired = d.hits.filter((h) => !h.error).map((h) => h.ruleName);
      const failed = d.hits.filter((h) => h.error).map((h) => h.ruleName);
      span.addEvent("transfer assessed", { ...attributesOf(d), "tally.risk.rules_fired": fired.join(", "), ...(failed.length > 0 ? { "tally.risk.rules_failed": failed.join(", ") } : {}) });
    }
    return;
  }
  for (const d of decided) {
    span.setAttributes(attributesOf(d));
    for (const hit of d.hits) {
      span.addEvent(hit.error ? "rule could not be evaluated" : "rule fired", {
        "tally.risk.rule.id": hit.ruleId,
        "tally.risk.rule.version": hit.ruleVersion,
        "tally.risk.rule.name": hit.ruleName,
        "tally.risk.rule.action": hit.action,
        "tally.risk.rule.score": hit.score,
        ...(hit.error ? { "tally.risk.rule.error": hit.error } : {}),
      });
    }
  }
}

/** The fields a decision needs, each checked; the transfer comes back with normalized ids. */
function validTransfer(transfer: Transfer | undefined): Transfer {
  if (!transfer) throw new DomainError(ErrorReason.MISSING_FIELD, "transfer is required", "transfer");
  const id = requireId(transfer.id, "transfer.id");
  const fromAccountId = requireId(transfer.fromAccountId, "transfer.from_account_id");
  const toAccountId = requireId(transfer.toAccountId, "transfer.to_account_id");
  if (fromAccountId === toAccountId) {
    throw new DomainError(ErrorReason.ACCOUNTS_MUST_BE_DIFFERENT, "the accounts must be different", "transfer.to_account_id");
  }
  if (!transfer.amount) throw new DomainError(ErrorReason.MISSING_FIELD, "transfer.amount is required", "transfer.amount");
  if (transfer.amount.amount <= 0n) {
    throw new DomainError(ErrorReason.AMOUNT_MUST_BE_POSITIVE, "transfer.amount must be positive", "transfer.amount.amount");
  }
  requireCurrency(transfer.amount.currency, "transfer.amount.currency");
  if (!(transfer.kind in TransferKind) || transfer.kind === TransferKind.UNSPECIFIED) {
    throw new DomainError(ErrorReason.INVALID_FIELD, "transfer.kind must be a known kind", "transfer.kind");
  }
  // Everything else is stored with the assessment: it must fit the database and the event stream.
  requireMetadata(transfer.metadata, "transfer.metadata");
  requireText(transfer.requestId, "transfer.request_id", 128);
  requireText(transfer.description, "transfer.description", 1000);
  requireText(transfer.failureMessage, "transfer.failure_message", 1000);
  if (transfer.reversesTransferId !== "") requireId(transfer.reversesTransferId, "transfer.reverses_transfer_id");
  requireTimestamp(transfer.holdExpiresAt, "transfer.hold_expires_at");
  requireTimestamp(transfer.createdAt, "transfer.created_at");
  requireTimestamp(transfer.updatedAt, "transfer.updated_at");
  requireTimestamp(transfer.postedAt, "transfer.posted_at");
  if (transfer.risk) validRiskOutcome(transfer.risk);
  return { ...transfer, id, fromAccountId, toAccountId };
}

// A decision's reasons are the rules that fired: a few, never hundreds.
const MAX_REASONS = 100;

/** What the transactions service noted of an earlier decision (a fallback's, say), stored with the transfer. */
function validRiskOutcome(risk: RiskOutcome): void {
  if (risk.reasons.length > MAX_REASONS) {
    throw new DomainError(ErrorReason.INVALID_FIELD, `transfer.risk.reasons holds at most ${MAX_REASONS}`, "transfer.risk.reasons");
  }
  risk.reasons.forEach((reason, i) => requireText(reason, `transfer.risk.reasons[${i}]`, 1000));
  if (risk.assessmentId !== "") requireId(risk.assessmentId, "transfer.risk.assessment_id");
  if (risk.reviewId !== "") requireId(risk.reviewId, "transfer.risk.review_id");
}

/**
 * Whether a customer's own account sent the transfer: a declined one counts against it. Not a
 * deposit (sent from the bank's settlement account) nor a reversal (sent back by the bank).
 */
function startedByCustomer(transfer: Transfer, from: AccountFacts): boolean {
  return from.kind === "customer" && transfer.kind !== TransferKind.DEPOSIT && transfer.kind !== TransferKind.REVERSAL;
}
