import { create } from "@bufbuild/protobuf";
import { status as Status } from "@grpc/grpc-js";
import { BrokenCircuitError, CircuitState, CountBreaker, circuitBreaker, handleWhen } from "cockatiel";
import type { RiskService } from "../../../../gen/tally/risk/v1/risk_service_pb";
import type { Assessment } from "../../../../gen/tally/risk/v1/risk_pb";
import { RiskDecision, RiskOutcomeSchema, type RiskOutcome } from "../../../../gen/tally/transactions/v1/transfer_pb";
import { CallBatcher } from "../../../../platform/call-batcher";
import type { ClientOf } from "../../../../platform/grpc/client";
import { grpcCodeOf, RemoteError } from "../../../../platform/grpc/status";
import type { Logger } from "../../../../platform/logger";
import type { TransferRow } from "../db/schema";
import { transferMessage } from "../proto";

export interface RiskGateOptions {
  deadlineMs: number;
  /** The breaker opens once at least this many calls were made and half or more of the recent ones failed. */
  breakerFailures: number;
  breakerCooldownMs: number;
}

// The recent calls the breaker judges risk by, and the share of them that must have failed.
const BREAKER_WINDOW = 20;
const BREAKER_THRESHOLD = 0.5;

// Risk refused the request itself: asking again cannot help, and the transfer ends on it.
const REFUSALS = new Set([Status.INVALID_ARGUMENT, Status.FAILED_PRECONDITION, Status.ALREADY_EXISTS, Status.OUT_OF_RANGE]);
const isRefusal = (err: unknown): err is RemoteError => err instanceof RemoteError && REFUSALS.has(err.code);
// Anything else (unreachable, slow, overloaded, failing, a wrong peer) means risk cannot answer.
const isUnavailable = (err: Error) => !isRefusal(err);

export type RiskAnswer = { outcome: RiskOutcome } | { refused: RemoteError } | undefined;

/** A transfer to assess, and when it was asked for. */
type Asked = { row: TransferRow; at: number };

/**
 * One call to risk at a time per replica; the assessments asked for meanwhile go together in the
 * next, up to the 1,000 risk takes in one call (a whole batch's, so it pays a call's costs once).
 * The call's deadline grows with what it carries, so no call is missed for its size, and no
 * transfer waits on a risk that does not answer longer than its deadline.
 */
const RISK_CALLS = { concurrency: 1, maxItems: 1000 };
/** A call has the deadline for each 50 assessments it carries: risk's work grows with them. */
const ASSESSMENTS_PER_DEADLINE = 50;
/** Risk reads a message of 8 MiB at most: what is asked for together goes in calls of at most half that. */
const CALL_BUDGET_BYTES = 4 * 1024 * 1024;

/** No less than a transfer's encoded size: its ids and numbers, and its texts at the 3 bytes UTF-8 may take per character. */
function sizeBound(row: TransferRow): number {
  let text = row.description.length + row.failureMessage.length + JSON.stringify(row.risk ?? "").length;
  for (const [key, value] of Object.entries(row.metadata)) text += key.length + value.length;
  return 1024 + 3 * text + 8 * Object.keys(row.metadata).length;
}

/** The assessments in calls that each stay within the budget, in order. */
function withinBudget(asked: Asked[]): Asked[][] {
  const calls: Asked[][] = [[]];
  let bytes = 0;
  for (const a of asked) {
    const size = sizeBound(a.row);
    if (calls.at(-1)!.length > 0 && bytes + size > CALL_BUDGET_BYTES) {
      calls.push([]);
      bytes = 0;
    }
    calls.at(-1)!.push(a);
    bytes += size;
  }
  return calls;
}

/**
 * Asks risk about a transfer, with a short deadline, behind a circuit breaker:
 * once half of the recent calls failed it stops asking for a cool-down, then
 * lets one call through to test. It judges by the share of failures, not by
 * a run of them: under load a burst of calls in flight can miss the deadline
 * together while risk is well, and opening then would hold every transfer
 * for a cool-down and re-drive them all at once when it closes. Returns
 * undefined when risk cannot answer, so the caller's fallback policy decides.
 */
export class RiskGate {
  private readonly breaker;
  /** Concurrent assessments share one AssessTransfers call, and so one deadline and one sample of the breaker. */
  private readonly calls: CallBatcher<Asked, Assessment | RemoteError>;
  /** When risk last answered a call (performance.now()). */
  private answeredAt = 0;

  constructor(
    risk: Pick<ClientOf<typeof RiskService>, "assessTransfers">,
    private readonly options: RiskGateOptions,
    private readonly log: Logger,
  ) {
    this.breaker = circuitBreaker(handleWhen(isUnavailable), {
      halfOpenAfter: options.breakerCooldownMs,
      breaker: new CountBreaker({ threshold: BREAKER_THRESHOLD, size: Math.max(BREAKER_WINDOW, options.breakerFailures), minimumNumberOfCalls: options.breakerFailures }),
    });
    this.breaker.onStateChange((state) => log.warn({ breaker: CircuitState[state] }, "risk circuit breaker changed state"));
    const callOnce = (asked: Asked[]) => {
      const rows = asked.map((a) => a.row);
      // The deadline runs from when the first of them asked, or from risk's last answer if that came
      // later: waiting behind calls risk answers is its work getting done, but time spent behind a
      // call it never answered (it hangs) counts.
      const since = Math.max(Math.min(...asked.map((a) => a.at)), this.answeredAt);
      const timeoutMs = Math.floor(since + this.options.deadlineMs * Math.ceil(rows.length / ASSESSMENTS_PER_DEADLINE) - performance.now());
      if (timeoutMs < 1) return Promise.reject(new Error("the deadline passed while an earlier call waited on risk"));
      return this.breaker.execute(async () => {
        const { results } = await risk.assessTransfers({ transfers: rows.map(transferMessage) }, { timeoutMs }).catch((err: unknown) => {
          if (isRefusal(err)) this.answeredAt = performance.now();
          throw err;
        });
        this.answeredAt = performance.now();
        if (results.length !== rows.length) throw new Error(`risk answered ${results.length} of ${rows.length} assessments`);
        return results.map((r) => {
          if (r.assessment) {
            if (r.assessment.decision === RiskDecision.UNSPECIFIED) throw new Error("risk answered without a decision");
            return r.assessment;
          }
          // Risk refused this transfer (what AssessTransfer answers with an error): it ends on that refusal.
          return new RemoteError(grpcCodeOf(r.errorReason), r.errorReason, r.errorMessage, r.errorField ? [{ field: r.errorField, description: r.errorMessage }] : [], {});
        });
      });
    };
    // Large transfers asked for together go in several calls, one after another.
    const call = async (asked: Asked[]) => {
      const answers: (Assessment | RemoteError)[] = [];
      for (const part of withinBudget(asked)) answers.push(...(await callOnce(part)));
      return answers;
    };
    // A refusal of the whole call is one transfer's fault: each is asked about again alone.
    this.calls = new CallBatcher("RiskService/AssessTransfers", call, { ...RISK_CALLS, retryAlone: isRefusal });
  }

  get state(): "closed" | "open" | "half-open" | "isolated" {
    return (["closed", "open", "half-open", "isolated"] as const)[this.breaker.state];
  }

  /** Risk's decision; its refusal of the request; or undefined when it cannot answer (the fallback decides). */
  async assess(row: TransferRow): Promise<RiskAnswer> {
    try {
      const answer = await this.calls.submit({ row, at: performance.now() });
      if (answer instanceof RemoteError) return { refused: answer };
      return {
        outcome: create(RiskOutcomeSchema, {
          decision: answer.decision,
          score: answer.score,
          reasons: answer.hits.map((h) => `${h.ruleName} (v${h.ruleVersion})${h.error ? " could not be evaluated" : ""}`),
          assessmentId: answer.id,
        }),
      };
    } catch (err) {
      if (isRefusal(err)) return { refused: err };
      this.log.warn({ transfer: row.id, err: (err as Error).message, breaker: err instanceof BrokenCircuitError ? "open" : this.state }, "risk cannot answer; the fallback policy decides");
      return undefined;
    }
  }
}
