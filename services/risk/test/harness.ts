import { AccountService } from "../../../gen/tally/account/v1/account_service_pb";
import { LedgerService } from "../../../gen/tally/account/v1/ledger_service_pb";
import { RiskService } from "../../../gen/tally/risk/v1/risk_service_pb";
import { createServiceClient } from "../../../platform/grpc/client";
import { Lifecycle } from "../../../platform/lifecycle";
import { createTestDatabase, serviceEnv, testLogger, testStream, type TestDatabase, type TestStream } from "../../../test/support/infra";
import { accountConfig } from "../../account/src/config";
import { startAccountService } from "../../account/src/service";
import { riskConfig } from "../src/config";
import { startRiskService, type RiskServiceHandle } from "../src/service";

/** The real risk service and the real account service it learns from, on free ports, sharing one stream. */
export interface RiskHarness {
  risk: ReturnType<typeof riskClient>;
  accounts: ReturnType<typeof accountsClient>;
  ledger: ReturnType<typeof ledgerClient>;
  service: RiskServiceHandle;
  db: TestDatabase;
  stream: TestStream;
  stop(): Promise<void>;
}

const riskClient = (target: string) => createServiceClient(RiskService, target, { defaultTimeoutMs: 10_000 });
const accountsClient = (target: string) => createServiceClient(AccountService, target, { defaultTimeoutMs: 10_000 });
const ledgerClient = (target: string) => createServiceClient(LedgerService, target, { defaultTimeoutMs: 30_000 });

export async function startRiskHarness(extraEnv: Record<string, string> = {}): Promise<RiskHarness> {
  const db = await createTestDatabase();
  const stream = testStream();
  const lifecycle = new Lifecycle(testLogger());
  const account = await startAccountService(accountConfig(serviceEnv(db, stream)), testLogger(), lifecycle);
  const accountTarget = `127.0.0.1:${account.port}`;
  const service = await startRiskService(
    // Risk asks the account service of an account it has not yet learnt of; on a busy machine that
    // may take longer than the 200 ms it waits in production, and the account would be "unknown".
    riskConfig(serviceEnv(db, stream, { ACCOUNT_SERVICE_URL: accountTarget, ACCOUNT_LOOKUP_TIMEOUT_MS: "5000", ...extraEnv })),
    testLogger(),
    lifecycle,
  );
  const risk = riskClient(`127.0.0.1:${service.port}`);
  const accounts = accountsClient(accountTarget);
  const ledger = ledgerClient(accountTarget);
  return {
    risk,
    accounts,
    ledger,
    service,
    db,
    stream,
    async stop() {
      for (const client of [risk, accounts, ledger]) client.close();
      await lifecycle.stop("test done");
      await Promise.all([db.drop(), stream.delete()]);
    },
  };
}
