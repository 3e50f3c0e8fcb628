import { AccountService } from "../../../gen/tally/account/v1/account_service_pb";
import { LedgerService } from "../../../gen/tally/account/v1/ledger_service_pb";
import { RiskService } from "../../../gen/tally/risk/v1/risk_service_pb";
import { TransactionService } from "../../../gen/tally/transactions/v1/transaction_service_pb";
import { createServiceClient } from "../../../platform/grpc/client";
import { Lifecycle } from "../../../platform/lifecycle";
import { createTestDatabase, serviceEnv, testLogger, testStream, type TestDatabase, type TestStream } from "../../../test/support/infra";
import { accountConfig } from "../../account/src/config";
import { startAccountService } from "../../account/src/service";
import { riskConfig } from "../../risk/src/config";
import { startRiskService } from "../../risk/src/service";
import { transactionsConfig } from "../src/config";
import { startTransactionsService, type TransactionsServiceHandle } from "../src/service";

const clientOptions = { defaultTimeoutMs: 15_000 };
// Every service shares the test's one event loop (and the machine, other suites): risk's budget for
// asking the account service about an account it has not seen must not send a transfer to review.
const RISK_ENV = { ACCOUNT_LOOKUP_TIMEOUT_MS: "5000" };

/** The three services on free ports, sharing one fresh database and one private stream, with real clients. */
export interface HarnessOptions {
  transactionsEnv?: Record<string, string>;
  /** false: risk is not started (unreachable), or started later on riskPort. */
  withRisk?: boolean;
  riskPort?: number;
  /** false: no transactions service in this process (a test runs it as a child process). */
  withTransactions?: boolean;
}

export async function startTransactionsHarness(options: HarnessOptions = {}) {
  const db = await createTestDatabase();
  const stream = testStream();
  const lifecycle = new Lifecycle(testLogger());
  const account = await startAccountService(accountConfig(serviceEnv(db, stream, { HOLD_EXPIRY_INTERVAL_MS: "100" })), testLogger(), lifecycle);
  const accountTarget = `127.0.0.1:${account.port}`;
  // Without risk, calls go to a port where nothing listens (yet): risk is unreachable.
  let riskTarget = `127.0.0.1:${options.riskPort ?? 1}`;
  if (options.withRisk !== false) {
    const risk = await startRiskService(riskConfig(serviceEnv(db, stream, { ACCOUNT_SERVICE_URL: accountTarget, ...RISK_ENV })), testLogger(), lifecycle);
    riskTarget = `127.0.0.1:${risk.port}`;
  }
  const env = serviceEnv(db, stream, {
    ACCOUNT_SERVICE_URL: accountTarget,
    RISK_SERVICE_URL: riskTarget,
    RECOVERY_INTERVAL_MS: "100",
    RECOVERY_AFTER_MS: "300",
    DRIVE_LEASE_MS: "2000",
    ...options.transactionsEnv,
  });
  const service = options.withTransactions === false ? undefined : await startTransactionsService(transactionsConfig(env), testLogger(), lifecycle);
  const clients = {
    transactions: createServiceClient(TransactionService, `127.0.0.1:${service?.port ?? 1}`, clientOptions),
    accounts: createServiceClient(AccountService, accountTarget, clientOptions),
    ledger: createServiceClient(LedgerService, accountTarget, clientOptions),
    risk: createServiceClient(RiskService, riskTarget, clientOptions),
  };
  return {
    ...clients,
    service: service as TransactionsServiceHandle,
    accountTarget,
    db: db as TestDatabase,
    stream: stream as TestStream,
    env,
    /** Starts risk later, on the port the transactions service was told about (riskPort). */
    async startRisk() {
      const risk = await startRiskService(
        riskConfig(serviceEnv(db, stream, { ACCOUNT_SERVICE_URL: accountTarget, GRPC_PORT: String(options.riskPort), ...RISK_ENV })),
        testLogger(),
        lifecycle,
      );
      return risk.port;
    },
    async stop() {
      for (const c of Object.values(clients)) c.close();
      await lifecycle.stop("test done");
      await Promise.all([db.drop(), stream.delete()]);
    },
  };
}

export type TransactionsHarness = Awaited<ReturnType<typeof startTransactionsHarness>>;
