import type { DescService } from "@bufbuild/protobuf";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { RiskService } from "../../gen/tally/risk/v1/risk_service_pb";
import { TransactionService } from "../../gen/tally/transactions/v1/transaction_service_pb";
import { createServiceClient } from "../../platform/grpc/client";
import type { GatewayConfig } from "./config";

/** One backend: a public service and the grpc-js client that reaches its replicas. */
export interface Backend {
  service: DescService;
  client: Record<string, (request: unknown, options?: { deadline?: Date; timeoutMs?: number }) => Promise<unknown>> & { close(): void };
}

// Reads are safe to retry on UNAVAILABLE; creates carry idempotency keys, so they are too.
const IDEMPOTENT = {
  account: ["getAccount", "listAccounts", "getBalance", "listEntries", "getSystemAccount", "createAccount", "freezeAccount", "unfreezeAccount", "closeAccount"],
  transactions: ["getTransfer", "listTransfers", "createTransfer", "createDeposit", "createWithdrawal", "authorizeTransfer", "captureTransfer", "voidTransfer", "reverseTransfer", "batchCreateTransfers"],
  risk: ["getAssessment", "getRule", "listRules", "testRule", "listReviews", "getReview", "listAlerts", "getRiskProfile"],
};

export function createBackends(config: GatewayConfig): Backend[] {
  const options = (retryableMethods: string[]) => ({ defaultTimeoutMs: config.GRPC_DEADLINE_MS, retryableMethods });
  return [
    { service: AccountService, client: createServiceClient(AccountService, config.ACCOUNT_SERVICE_URL, options(IDEMPOTENT.account)) },
    { service: TransactionService, client: createServiceClient(TransactionService, config.TRANSACTIONS_SERVICE_URL, options(IDEMPOTENT.transactions)) },
    { service: RiskService, client: createServiceClient(RiskService, config.RISK_SERVICE_URL, options(IDEMPOTENT.risk)) },
  ] as unknown as Backend[];
}
