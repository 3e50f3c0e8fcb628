import { create } from "@bufbuild/protobuf";
import { status as Status } from "@grpc/grpc-js";
import { BrokenCircuitError, CircuitState, CountBreaker, circuitBreaker, handleWhen } from "cockatiel";
import type { RiskService } from "../../../../gen/tally/risk/v1/risk_service_pb";
import { RiskDecision, RiskOutcomeSchema, type RiskOutcome } from "../../../../gen/tally/transactions/v1/transfer_pb";
import type { ClientOf } from "../../../../platform/grpc/client";
import { RemoteError } from "../../../../platform/grpc/status";
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

  constructor(
    private readonly risk: Pick<ClientOf<typeof RiskService>, "assessTransfer">,
    private readonly options: RiskGateOptions,
    private readonly log: Logger,
  ) {
    this.breaker = circuitBreaker(handleWhen(isUnavailable), {
      halfOpenAfter: options.breakerCooldownMs,
      breaker: new CountBreaker({ threshold: BREAKER_THRESHOLD, size: Math.max(BREAKER_WINDOW, options.breakerFailures), minimumNumberOfCalls: options.breakerFailures }),
    });
    this.breaker.onStateChange((state) => log.warn({ breaker: CircuitState[state] }, "risk circuit breaker changed state"));
  }

  get state(): "closed" | "open" | "half-open" | "isolated" {
    return (["closed", "open", "half-open", "isolated"] as const)[this.breaker.state];
  }

  /** Risk's decision; its refusal of the request; or undefined when it cannot answer (the fallback decides). */
  async assess(row: TransferRow): Promise<RiskAnswer> {
    try {
      const { assessment } = await this.breaker.execute(async () => {
        const reply = await this.risk.assessTransfer({ transfer: transferMessage(row) }, { timeoutMs: this.options.deadlineMs });
        if (!reply.assessment || reply.assessment.decision === RiskDecision.UNSPECIFIED) throw new Error("risk answered without a decision");
        return reply;
      });
      return {
        outcome: create(RiskOutcomeSchema, {
          decision: assessment!.decision,
          score: assessment!.score,
          reasons: assessment!.hits.map((h) => `${h.ruleName} (v${h.ruleVersion})`),
          assessmentId: assessment!.id,
        }),
      };
    } catch (err) {
      if (isRefusal(err)) return { refused: err };
      this.log.warn({ transfer: row.id, err: (err as Error).message, breaker: err instanceof BrokenCircuitError ? "open" : this.state }, "risk cannot answer; the fallback policy decides");
      return undefined;
    }
  }
}

