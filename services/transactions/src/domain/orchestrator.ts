import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { LedgerTransferState, PostingResult } from "../../../../gen/tally/account/v1/ledger_pb";
import { RiskDecision, RiskOutcomeSchema } from "../../../../gen/tally/transactions/v1/transfer_pb";
import { ErrorReason, reasonName } from "../../../../platform/errors";
import { newId as newLedgerId } from "../../../../platform/ids";
import { RemoteError } from "../../../../platform/grpc/status";
import type { Logger } from "../../../../platform/logger";
import type { TransferRow } from "../db/schema";
import { riskOutcomeJson, riskOutcomeOf } from "../proto";
import { isLedgerRefusal, type LedgerGate, type LedgerOutcome } from "./ledger-gate";
import type { RiskGate } from "./risk-gate";
import type { TransferChanges, Transfers } from "./transfers";

export interface FallbackPolicy {
  /** What to do when risk cannot answer. */
  mode: "hold" | "decline" | "approve";
  /** With "approve": larger amounts are held instead. */
  approveMax: bigint;
}


/** Why the ledger refused, as the reason the transfer keeps. */
const FAILURE: Partial<Record<PostingResult, ErrorReason>> = {
  [PostingResult.INSUFFICIENT_FUNDS]: ErrorReason.INSUFFICIENT_FUNDS,
  [PostingResult.DEBIT_ACCOUNT_FROZEN]: ErrorReason.ACCOUNT_FROZEN,
  [PostingResult.CREDIT_ACCOUNT_FROZEN]: ErrorReason.ACCOUNT_FROZEN,
  [PostingResult.DEBIT_ACCOUNT_CLOSED]: ErrorReason.ACCOUNT_CLOSED,
  [PostingResult.CREDIT_ACCOUNT_CLOSED]: ErrorReason.ACCOUNT_CLOSED,
  [PostingResult.DEBIT_ACCOUNT_NOT_FOUND]: ErrorReason.ACCOUNT_NOT_FOUND,
  [PostingResult.CREDIT_ACCOUNT_NOT_FOUND]: ErrorReason.ACCOUNT_NOT_FOUND,
  [PostingResult.CURRENCY_MISMATCH]: ErrorReason.CURRENCY_MISMATCH,
  [PostingResult.OVERFLOWS_BALANCE]: ErrorReason.AMOUNT_OUT_OF_RANGE,
  [PostingResult.EXCEEDS_PENDING_AMOUNT]: ErrorReason.EXCEEDS_PENDING_AMOUNT,
  [PostingResult.PENDING_TRANSFER_EXPIRED]: ErrorReason.PENDING_TRANSFER_EXPIRED,
  [PostingResult.PENDING_TRANSFER_ALREADY_POSTED]: ErrorReason.PENDING_TRANSFER_ALREADY_POSTED,
  [PostingResult.PENDING_TRANSFER_ALREADY_VOIDED]: ErrorReason.PENDING_TRANSFER_ALREADY_VOIDED,
  [PostingResult.EXISTS_WITH_DIFFERENT_FIELDS]: ErrorReason.EXISTS_WITH_DIFFERENT_FIELDS,
};

const failed = (result: PostingResult): TransferChanges => ({
  status: "failed",
  step: "done",
  failureReason: reasonName(FAILURE[result] ?? ErrorReason.INTERNAL),
  failureMessage: `the ledger refused: ${PostingResult[result]}`,
});

/** The hold was captured: `amount` posted from it (a refusal of an earlier capture no longer stands). */
const captured = (amount: bigint, postedAt: Date): TransferChanges => ({ status: "posted", step: "done", capturedAmount: amount, postedAt, failureReason: "", failureMessage: "" });

/** The dependency did not answer: leave the step for the recovery loop. */
const STALLED = Symbol("stalled");
/** Another driver moved the transfer on (this one's claim had lapsed): it is theirs now. */
const TAKEN = Symbol("taken");

/**
 * Drives a transfer through its steps — risk, then the ledger — persisting
 * each outcome before the next, so a crash or a timeout at any point leaves a
 * step that the recovery loop re-drives. Every step is idempotent: risk
 * decides a transfer once, the ledger applies a ledger transfer id once.
 */
export class Orchestrator {
  constructor(
    private readonly transfers: Transfers,
    private readonly risk: RiskGate,
    private readonly ledger: LedgerGate,
    private readonly fallback: FallbackPolicy,
    private readonly log: Logger,
    readonly leaseMs: number,
    private readonly failpoint: (name: string) => void = () => {},
  ) {}

  /**
   * Drives until the transfer rests (done, or waiting on a dependency); returns it as it then is.
   * `claimed`: the caller claimed it already (in the transaction that created it).
   */
  async drive(id: string, claimed?: TransferRow): Promise<TransferRow> {
    let row = claimed ?? (await this.transfers.claim(id, this.leaseMs));
    if (!row) return this.transfers.get(id); // done already, or another driver has it
    let ours = true;
    try {
      while (row.step !== "done") {
        this.failpoint(`before-${row.step}`);
        const next = await this.step(row);
        if (next === STALLED) break;
        if (next === TAKEN) {
          ours = false;
          return this.transfers.get(id);
        }
        // Just held because risk could not answer: answer the caller now; recovery asks risk again after a rest.
        const heldForFallback = row.step === "hold" && next.step === "assess";
        row = next;
        if (heldForFallback) break;
      }
    } finally {
      if (ours && row.step !== "done") await this.transfers.release(id, row.leaseUntil);
    }
    return row;
  }

  private async step(row: TransferRow): Promise<TransferRow | typeof STALLED | typeof TAKEN> {
    try {
      switch (row.step) {
        case "assess":
          return await this.assess(row);
        case "post":
          return await this.apply(row, await this.ledger.post(row), (t) => ({ status: "posted", step: "done", postedAt: t.createdAt ? timestampDate(t.createdAt) : new Date() }));
        case "hold":
          return await this.apply(row, await this.ledger.hold(row), (t) =>
            // A re-drive may find the hold already gone: it expired while the transfer did not know of it.
            t.state === LedgerTransferState.PENDING_EXPIRED
              ? { status: "expired", step: "done" }
              : {
                  status: "held",
                  holdExpiresAt: t.expiresAt ? timestampDate(t.expiresAt) : null,
                  // Held for a fallback: ask risk again once it answers. Otherwise rest: a person or an event moves it on.
                  step: riskOutcomeOf(row)?.fallback ? "assess" : "done",
                },
          );
        case "capture":
          return await this.apply(row, await this.ledger.capture(row, row.finalizeLedgerId!, row.captureAmount), (t) => captured(t.amount, t.createdAt ? timestampDate(t.createdAt) : new Date()));
        case "void":
          return await this.apply(row, await this.ledger.void(row, row.finalizeLedgerId!), () => ({ status: "voided", step: "done" }));
        default:
          return row;
      }
    } catch (err) {
      // The ledger refused the posting itself: posting it again cannot help.
      if (isLedgerRefusal(err) && row.step !== "assess") {
        return this.save(row, { status: "failed", step: "done", failureReason: err.reasonName, failureMessage: `the ledger refused the request: ${err.message}` });
      }
      if (err instanceof RemoteError) {
        this.log.warn({ transfer: row.id, step: row.step, reason: err.reasonName }, "step did not complete; recovery will retry it");
        return this.stall(row);
      }
      throw err;
    }
  }

  /** Records a ledger outcome: the step's success, or the failure it ends the transfer with. */
  private async apply(
    row: TransferRow,
    outcome: LedgerOutcome,
    success: (t: Extract<LedgerOutcome, { ok: true }>["transfer"]) => TransferChanges,
  ): Promise<TransferRow | typeof STALLED | typeof TAKEN> {
    // The ledger has applied it; the transfer does not know yet.
    this.failpoint(`applied-${row.step}`);
    const finalizing = row.step === "capture" || row.step === "void";
    let changes: TransferChanges;
    if (outcome.ok) changes = success(outcome.transfer);
    else if (outcome.result === PostingResult.PENDING_TRANSFER_EXPIRED) changes = { status: "expired", step: "done" };
    // The hold was finalized already, by an earlier capture or void of it that a driver which outlived
    // its claim posted late: the ledger's word stands, whatever this step meant to do.
    else if (outcome.result === PostingResult.PENDING_TRANSFER_ALREADY_VOIDED && finalizing) changes = { status: "voided", step: "done" };
    else if (outcome.result === PostingResult.PENDING_TRANSFER_ALREADY_POSTED && finalizing) {
      const posted = await this.postedBefore(row);
      if (posted === STALLED) return STALLED;
      changes = posted;
    } else if (finalizing) {
      // The hold stands (say, an account was frozen meanwhile), and the refusal is noted. An authorization
      // stays held, for its holder to capture or void again; a transfer held for review or for risk has
      // no one to, so its hold is released (voided) rather than left to tie up the funds till it expires.
      const { status: _failed, step: _done, ...refusal } = failed(outcome.result);
      changes =
        row.step === "capture" && row.kind !== "authorization"
          ? { ...refusal, step: "void", finalizeLedgerId: newLedgerId(), captureAmount: 0n }
          : { ...refusal, step: "done", finalizeLedgerId: null, captureAmount: 0n };
    } else changes = failed(outcome.result);
    const saved = await this.save(row, changes);
    // This driver's claim lapsed, and another recorded the hold as still held (its own capture of it
    // refused, say) before this driver's finalize posted: the ledger's word stands over a transfer
    // left at rest, which no one would drive again.
    if (saved === TAKEN && outcome.ok && finalizing) return this.recordLateFinalize(row.id, changes);
    return saved;
  }

  /** What an earlier capture posted from the hold; STALLED (to look again later) while the ledger cannot say. */
  private async postedBefore(row: TransferRow): Promise<TransferChanges | typeof STALLED> {
    const hold = await this.ledger.heldAs(row).catch((err: unknown) => this.log.warn({ transfer: row.id, err: (err as Error).message }, "the ledger did not say what was posted from the hold"));
    if (!hold) {
      return this.stall(row);
    }
    if (row.step === "void") this.log.warn({ transfer: row.id, postedAmount: String(hold.postedAmount) }, "the hold to void was posted by an earlier capture of it; the transfer is posted");
    return captured(hold.postedAmount, new Date());
  }

  /** Leaves the step for the recovery loop, marked as just tried (so the ones waiting longest go first). */
  private async stall(row: TransferRow): Promise<typeof STALLED> {
    await this.transfers.touch(row.id);
    return STALLED;
  }

  private async recordLateFinalize(id: string, changes: TransferChanges): Promise<TransferRow | typeof TAKEN> {
    const current = await this.transfers.get(id);
    if (current.status !== "held" || current.step !== "done") return TAKEN;
    this.log.warn({ transfer: id, status: changes.status }, "a finalize posted after the transfer was left held; it takes the ledger's state");
    return this.save(current, changes);
  }

  private async assess(row: TransferRow): Promise<TransferRow | typeof STALLED | typeof TAKEN> {
    const heldForFallback = row.status === "held";
    const answer = await this.risk.assess(row);
    if (!answer) {
      // Still no answer for a transfer already held: keep waiting. Otherwise the policy decides.
      if (heldForFallback) {
        return this.stall(row);
      }
      return this.save(row, this.fallbackChanges(row));
    }
    if ("refused" in answer) {
      const refusal = { failureReason: answer.refused.reasonName, failureMessage: `risk refused the request: ${answer.refused.message}` };
      return heldForFallback ? this.save(row, { step: "void", ...this.finalizer(row), ...refusal }) : this.save(row, { status: "failed", step: "done", ...refusal });
    }
    const outcome = create(RiskOutcomeSchema, { ...answer.outcome, fallback: false });
    const risk = riskOutcomeJson(outcome);
    switch (outcome.decision) {
      case RiskDecision.APPROVE:
        if (heldForFallback) {
          return row.kind === "authorization" ? this.save(row, { risk, step: "done" }) : this.save(row, { risk, step: "capture", ...this.finalizer(row, 0n) });
        }
        return this.save(row, { risk, step: row.kind === "authorization" ? "hold" : "post" });
      case RiskDecision.REVIEW:
        // Held until an analyst resolves the review (the resolution arrives as an event).
        return this.save(row, { risk, step: heldForFallback ? "done" : "hold" });
      default:
        if (heldForFallback) return this.save(row, { risk, step: "void", ...this.finalizer(row), failureReason: reasonName(ErrorReason.RISK_DECLINED) });
        return this.save(row, { risk, status: "declined", step: "done", failureReason: reasonName(ErrorReason.RISK_DECLINED), failureMessage: "declined by risk" });
    }
  }

  private fallbackChanges(row: TransferRow): TransferChanges {
    const outcome = (decision: RiskDecision) => riskOutcomeJson(create(RiskOutcomeSchema, { decision, fallback: true, reasons: ["risk unavailable"] }));
    if (this.fallback.mode === "decline") {
      return { risk: outcome(RiskDecision.DECLINE), status: "declined", step: "done", failureReason: reasonName(ErrorReason.RISK_UNAVAILABLE), failureMessage: "risk could not answer" };
    }
    if (this.fallback.mode === "approve" && row.amount <= this.fallback.approveMax) {
      return { risk: outcome(RiskDecision.APPROVE), step: row.kind === "authorization" ? "hold" : "post" };
    }
    // Hold the funds; ask risk again when it answers.
    return { risk: outcome(RiskDecision.UNSPECIFIED), step: "hold" };
  }

  /** The ledger transfer that will finalize the hold, chosen now so a re-drive posts the same one. */
  finalizer(row: TransferRow, captureAmount?: bigint): TransferChanges {
    return { finalizeLedgerId: row.finalizeLedgerId ?? newLedgerId(), ...(captureAmount !== undefined ? { captureAmount } : {}) };
  }

  private async save(row: TransferRow, input: TransferChanges): Promise<TransferRow | typeof TAKEN> {
    // Resting: the claim ends with the same write.
    const changes = input.step === "done" ? { ...input, leaseUntil: null } : input;
    // Only while this driver's claim is the transfer's (another claimed it once this one's lapsed, and
    // may have done this step's work with another outcome: a posting the ledger refused this driver and
    // then made for the next), and over the step, status and finalizing ledger transfer it last saw: a
    // driver that outlived its claim (paused, say) may find the transfer moved on and back at the same
    // step, as at assess again after a fallback hold, or at capture again after a refused capture.
    const seen = { step: row.step, status: row.status, finalizeLedgerId: row.finalizeLedgerId ?? undefined, leaseUntil: row.leaseUntil ?? undefined };
    const saved = await this.transfers.save(row, changes, seen);
    return saved ?? TAKEN;
  }
}
