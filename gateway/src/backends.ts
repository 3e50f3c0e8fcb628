import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { status as Status } from "@grpc/grpc-js";
import { BrokenCircuitError, CircuitState, ConsecutiveBreaker, circuitBreaker, handleWhen } from "cockatiel";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { RiskService } from "../../gen/tally/risk/v1/risk_service_pb";
import { TransactionService } from "../../gen/tally/transactions/v1/transaction_service_pb";
import { DomainError, ErrorReason } from "../../platform/errors";
import { createServiceClient, type CallOptions, type ClientOf } from "../../platform/grpc/client";
import { RemoteError } from "../../platform/grpc/status";
import type { Logger } from "../../platform/logger";
import type { GatewayConfig } from "./config";

/** Calls one method of a backend service on one of its replicas. */
export type MethodCall = (request: unknown, options?: CallOptions) => Promise<unknown>;

export interface Backends {
  account: ClientOf<typeof AccountService>;
  transactions: ClientOf<typeof TransactionService>;
  risk: ClientOf<typeof RiskService>;
  /** The public services, for routing. */
  services: DescService[];
  /** The call that reaches a method's service. */
  callOf(method: DescMethod): MethodCall;
  close(): void;
}

// Reads are safe to retry on UNAVAILABLE; creates carry idempotency keys, so they are too.
const IDEMPOTENT = {
  account: ["getAccount", "listAccounts", "getBalance", "lookupAccounts", "listEntries", "getSystemAccount", "createAccount", "freezeAccount", "unfreezeAccount", "closeAccount"],
  transactions: ["getTransfer", "listTransfers", "createTransfer", "createDeposit", "createWithdrawal", "authorizeTransfer", "captureTransfer", "voidTransfer", "reverseTransfer", "batchCreateTransfers"],
  risk: ["getAssessment", "getRule", "listRules", "testRule", "listReviews", "getReview", "listAlerts", "getRiskProfile"],
};

// The service could not be reached or is shutting down; not a service that answered that something behind it is down
// (RISK_UNAVAILABLE), nor one too busy to take the request now (OVERLOADED), which serves the calls it can.
const isUnavailable = (err: unknown) => err instanceof RemoteError && err.code === Status.UNAVAILABLE && err.reason === ErrorReason.UNAVAILABLE;

/**
 * Puts a circuit breaker in front of every method of a client: after a run of
 * calls that found the service unavailable (every replica down, after
 * grpc-js's own retries), calls fail at once for a cool-down instead of each
 * waiting to fail, then one call tests whether the service is back. Meanwhile
 * the others fail at once too: cockatiel would hold them until that call ends,
 * past their own deadlines when the service is slow to answer it.
 */
function withBreaker<C extends { close(): void }>(name: string, client: C, config: GatewayConfig, log: Logger): C {
  const breaker = circuitBreaker(handleWhen(isUnavailable), { halfOpenAfter: config.BREAKER_COOLDOWN_MS, breaker: new ConsecutiveBreaker(config.BREAKER_FAILURES) });
  breaker.onBreak(() => log.warn({ backend: name }, "backend unavailable: circuit opened"));
  breaker.onReset(() => log.info({ backend: name }, "backend answers again: circuit closed"));
  const guarded: Record<string, unknown> = { close: () => client.close() };
  for (const [method, call] of Object.entries(client)) {
    if (method === "close") continue;
    const refuse = (circuit: "open" | "half-open") =>
      new DomainError(ErrorReason.UNAVAILABLE, `the ${name} service is unavailable; try again shortly`, [], { backend: name, circuit });
    guarded[method] = (request: unknown, options?: CallOptions) => {
      if (breaker.state === CircuitState.HalfOpen) return Promise.reject(refuse("half-open"));
      return breaker.execute(() => (call as unknown as MethodCall)(request, options)).catch((err: unknown) => {
        throw err instanceof BrokenCircuitError ? refuse("open") : err;
      });
    };
  }
  return guarded as C;
}

/** grpc-js clients for the three services, round-robin over each one's replicas, each behind a breaker. */
export function createBackends(config: GatewayConfig, log: Logger): Backends {
  const options = (retryableMethods: string[]) => ({ defaultTimeoutMs: config.GRPC_DEADLINE_MS, retryableMethods });
  const account = withBreaker("account", createServiceClient(AccountService, config.ACCOUNT_SERVICE_URL, options(IDEMPOTENT.account)), config, log);
  const transactions = withBreaker("transactions", createServiceClient(TransactionService, config.TRANSACTIONS_SERVICE_URL, options(IDEMPOTENT.transactions)), config, log);
  const risk = withBreaker("risk", createServiceClient(RiskService, config.RISK_SERVICE_URL, options(IDEMPOTENT.risk)), config, log);
  const clients = new Map<DescService, Record<string, unknown>>([
    [AccountService, account],
    [TransactionService, transactions],
    [RiskService, risk],
  ]);
  return {
    account,
    transactions,
    risk,
    services: [...clients.keys()],
    callOf: (method) => clients.get(method.parent)![method.localName] as MethodCall,
    close: () => clients.forEach((c) => (c.close as () => void)()),
  };
}
