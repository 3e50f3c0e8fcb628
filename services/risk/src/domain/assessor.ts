import { create, toJson } from "@bufbuild/protobuf";
import { metrics, trace } from "@opentelemetry/api";
import { eq } from "drizzle-orm";
import type { Assessment } from "../../../../gen/tally/risk/v1/risk_pb";
import { AssessmentCompletedSchema, ReviewOpenedSchema } from "../../../../gen/tally/events/v1/events_pb";
import { TransferKind, TransferSchema, type Transfer } from "../../../../gen/tally/transactions/v1/transfer_pb";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import { newId } from "../../../../platform/ids";
import { appendEvents, type NewEvent, type OutboxWriter } from "../../../../platform/outbox/append";
import { requireCurrency, requireId, requireMetadata, requireText } from "../../../../platform/validation";
import { assessments, reviews, type StoredHit } from "../db/schema";
import type { RiskDb } from "../db/types";
import { assessmentMessage, reviewMessage } from "../proto";
import { decide, type Thresholds } from "./decision";
import { transferFacts, type AccountFactsSource } from "./facts";
import type { Profiles } from "./profiles";
import type { RuleSet } from "./rule-set";

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
    const valid = validTransfer(transfer);
    // A transfer assessed before is decided again but stored once: the insert below keeps the first decision.
    const started = process.hrtime.bigint();
    const now = new Date();
    const [[fromAccount, toAccount], profile] = await Promise.all([
      this.accounts.facts([valid.fromAccountId, valid.toAccountId], deadline, now),
      this.profiles.profile(valid.fromAccountId, now),
    ]);
    const hits = await this.ruleSet.evaluate("assessment", {
      transfer: transferFacts(valid),
      from_account: fromAccount,
      to_account: toAccount,
      profile,
    });
    const { decision, score } = decide(hits, this.thresholds);
    const durationMicros = (process.hrtime.bigint() - started) / 1000n;

    const transferJson = toJson(TransferSchema, valid);
    const stored = await this.db.transaction(async (tx) => {
      const [row] = await tx
        .insert(assessments)
        .values({ id: newId(), transferId: valid.id, decision, score, hits, transfer: transferJson, durationMicros })
        .onConflictDoNothing()
        .returning();
      if (!row) return undefined; // assessed concurrently: that one stands
      const assessment = assessmentMessage(row);
      const events: NewEvent[] = [{ subjectId: valid.id, payload: { case: "assessmentCompleted", value: create(AssessmentCompletedSchema, { assessment }) } }];
      if (decision === "review") {
        const [review] = await tx
          .insert(reviews)
          .values({ id: newId(), transferId: valid.id, assessmentId: row.id, accountId: valid.fromAccountId, status: "open", hits, transfer: transferJson })
          .returning();
        events.push({ subjectId: review.id, payload: { case: "reviewOpened", value: create(ReviewOpenedSchema, { review: reviewMessage(review) }) } });
      }
      await appendEvents(tx, this.outbox, events);
      return assessment;
    });
    if (!stored) return this.earlier(valid);
    this.afterCommit();
    this.decisions.add(1, { decision });
    annotate(valid, decision, score, hits);
    return stored;
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

/** The decision on the caller's span, with each rule that fired as an event. */
function annotate(transfer: Transfer, decision: string, score: number, hits: StoredHit[]): void {
  const span = trace.getActiveSpan();
  if (!span?.isRecording()) return;
  span.setAttributes({
    "tally.transfer.id": transfer.id,
    "tally.account.from_id": transfer.fromAccountId,
    "tally.account.to_id": transfer.toAccountId,
    "tally.amount": String(transfer.amount?.amount ?? 0n),
    "tally.currency": transfer.amount?.currency ?? "",
    "tally.risk.decision": decision,
    "tally.risk.score": score,
  });
  for (const hit of hits) {
    span.addEvent("rule fired", {
      "tally.risk.rule.id": hit.ruleId,
      "tally.risk.rule.version": hit.ruleVersion,
      "tally.risk.rule.name": hit.ruleName,
      "tally.risk.rule.action": hit.action,
      "tally.risk.rule.score": hit.score,
    });
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
  return { ...transfer, id, fromAccountId, toAccountId };
}
