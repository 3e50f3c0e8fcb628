import { create } from "@bufbuild/protobuf";
import { status as Status } from "@grpc/grpc-js";
import { BrokenCircuitError, CircuitState, ConsecutiveBreaker, circuitBreaker, handleWhen } from "cockatiel";
import type { RiskService } from "../../../../gen/tally/risk/v1/risk_service_pb";
import { RiskDecision, RiskOutcomeSchema, type RiskOutcome } from "../../../../gen/tally/transactions/v1/transfer_pb";
import type { ClientOf } from "../../../../platform/grpc/client";
import { RemoteError } from "../../../../platform/grpc/status";
import type { Logger } from "../../../../platform/logger";
import type { TransferRow } from "../db/schema";
import { transferMessage } from "../proto";

export interface RiskGateOptions {
  deadlineMs: number;
  breakerFailures: number;
  breakerCooldownMs: number;
}

// Risk cannot answer: unreachable, too slow, overloaded, failing. Its refusals of bad input are answers.
const UNAVAILABLE = new Set([Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.RESOURCE_EXHAUSTED, Status.INTERNAL, Status.UNKNOWN, Status.CANCELLED]);
const isUnavailable = (err: Error) => !(err instanceof RemoteError) || UNAVAILABLE.has(err.code);

/**
 * Asks risk about a transfer, with a short deadline, behind a circuit breaker:
 * after a run of failures it stops asking for a cool-down, then lets one call
 * through to test. Returns undefined when risk cannot answer, so the caller's
 * fallback policy decides.
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
      breaker: new ConsecutiveBreaker(options.breakerFailures),
    });
    this.breaker.onStateChange((state) => log.warn({ breaker: CircuitState[state] }, "risk circuit breaker changed state"));
  }

  get state(): "closed" | "open" | "half-open" | "isolated" {
    return (["closed", "open", "half-open", "isolated"] as const)[this.breaker.state];
  }

  async assess(row: TransferRow): Promise<RiskOutcome | undefined> {
    try {
      const { assessment } = await this.breaker.execute(() =>
        this.risk.assessTransfer({ transfer: transferMessage(row) }, { timeoutMs: this.options.deadlineMs }),
      );
      return create(RiskOutcomeSchema, {
        decision: assessment?.decision ?? RiskDecision.UNSPECIFIED,
        score: assessment?.score ?? 0,
        reasons: (assessment?.hits ?? []).map((h) => `${h.ruleName} (v${h.ruleVersion})`),
        assessmentId: assessment?.id ?? "",
      });
    } catch (err) {
      if (err instanceof BrokenCircuitError || isUnavailable(err as Error)) {
        this.log.warn({ transfer: row.id, err: (err as Error).message }, "risk cannot answer; the fallback policy decides");
        return undefined;
      }
      throw err;
    }
  }
}

