import { create } from "@bufbuild/protobuf";
import { eq, inArray } from "drizzle-orm";
import { LedgerTransferState } from "../../../../gen/tally/account/v1/ledger_pb";
import type { EventEnvelope } from "../../../../gen/tally/events/v1/events_pb";
import { ReviewStatus } from "../../../../gen/tally/risk/v1/risk_pb";
import { RiskDecision, RiskOutcomeSchema } from "../../../../gen/tally/transactions/v1/transfer_pb";
import { ErrorReason, reasonName } from "../../../../platform/errors";
import { applyOnce } from "../../../../platform/inbox/apply-once";
import { inbox, transfers } from "../db/schema";
import type { TransactionsDb } from "../db/types";
import { riskOutcomeJson, riskOutcomeOf } from "../proto";
import type { Orchestrator } from "./orchestrator";
import type { Transfers } from "./transfers";

export const REVIEW_CONSUMER = "transactions.reviews";
export const LEDGER_CONSUMER = "transactions.ledger";

/**
 * Risk's review resolutions, applied once: a held transfer is captured when
 * approved and voided when declined (an approved authorization simply becomes
 * capturable). The step is recorded with the inbox row; driving it follows.
 */
export function reviewResolvedHandler(db: TransactionsDb, store: Transfers, orchestrator: Orchestrator) {
  return async (envelope: EventEnvelope): Promise<void> => {
    if (envelope.payload.case !== "reviewResolved" || !envelope.payload.value.review) return;
    const review = envelope.payload.value.review;
    const approved = review.status === ReviewStatus.APPROVED;
    if (!approved && review.status !== ReviewStatus.DECLINED) return;
    const outcome = await applyOnce(db, inbox, REVIEW_CONSUMER, envelope.id, async (tx) => {
      const [row] = await tx.select().from(transfers).where(eq(transfers.id, review.transferId)).for("update");
      if (!row) return undefined;
      // Still on its way to the hold (the ledger did not answer yet): take the event again later.
      if (row.step !== "done") throw new Error(`transfer ${row.id} is not held yet`);
      if (row.status !== "held") return undefined;
      const before = riskOutcomeOf(row);
      const risk = riskOutcomeJson(
        create(RiskOutcomeSchema, {
          decision: approved ? RiskDecision.APPROVE : RiskDecision.DECLINE,
          score: before?.score,
          reasons: before?.reasons,
          assessmentId: before?.assessmentId,
          reviewId: review.id,
        }),
      );
      if (approved && row.kind === "authorization") {
        await store.change(row.id, { risk }, undefined, tx);
        return undefined;
      }
      const next = approved
        ? { risk, step: "capture" as const, ...orchestrator.finalizer(row, 0n) }
        : { risk, step: "void" as const, ...orchestrator.finalizer(row), failureReason: reasonName(ErrorReason.RISK_DECLINED), failureMessage: review.note || "declined in review" };
      await store.change(row.id, next, { step: "done" }, tx);
      return row.id;
    });
    if (outcome.applied && outcome.result) await orchestrator.drive(outcome.result);
  };
}

/** The ledger's word that a hold expired: the transfer holding it is expired too. */
export function ledgerEventHandler(db: TransactionsDb, store: Transfers) {
  return async (envelope: EventEnvelope): Promise<void> => {
    if (envelope.payload.case !== "transfersPosted") return;
    const expired = envelope.payload.value.transfers.filter((t) => t.state === LedgerTransferState.PENDING_EXPIRED).map((t) => t.id);
    if (expired.length === 0) return;
    await applyOnce(db, inbox, LEDGER_CONSUMER, envelope.id, async (tx) => {
      const rows = await tx.select().from(transfers).where(inArray(transfers.id, expired)).for("update");
      for (const row of rows) {
        // Its hold step not recorded yet (a driver mid-way, or crashed): take the event again later.
        if (row.status === "created") throw new Error(`transfer ${row.id} is not recorded as held yet`);
        // A capture or void on its way learns of the expiry from the ledger, unless the ledger refused it
        // before the hold expired: then it comes back to rest held, so the event waits for it to land.
        if (row.status === "held" && (row.step === "capture" || row.step === "void")) throw new Error(`transfer ${row.id} has a capture or void on its way`);
        // Resting, or waiting to ask risk again: the hold is gone, so is the transfer.
        if (row.status === "held" && (row.step === "done" || row.step === "assess")) {
          await store.save(row, { status: "expired", step: "done", leaseUntil: null }, { status: "held", step: row.step }, tx);
        }
      }
    });
  };
}
