import { AccountService } from "../../../gen/tally/account/v1/account_service_pb";
import { LedgerService } from "../../../gen/tally/account/v1/ledger_service_pb";
import { createServiceClient } from "../../../platform/grpc/client";
import { Lifecycle } from "../../../platform/lifecycle";
import { createTestDatabase, serviceEnv, testLogger, testStream, type TestDatabase, type TestStream } from "../../../test/support/infra";
import { accountConfig } from "../src/config";
import { startAccountService, type AccountServiceHandle } from "../src/service";

/** The real account service on a free port, with its own database and stream, and real grpc-js clients. */
export interface AccountHarness {
  service: AccountServiceHandle;
  accounts: ReturnType<typeof accountsClient>;
  ledger: ReturnType<typeof ledgerClient>;
  db: TestDatabase;
  stream: TestStream;
  target: string;
  stop(): Promise<void>;
}

const accountsClient = (target: string) => createServiceClient(AccountService, target, { defaultTimeoutMs: 10_000 });
const ledgerClient = (target: string) => createServiceClient(LedgerService, target, { defaultTimeoutMs: 30_000 });

export async function startAccountHarness(extraEnv: Record<string, string> = {}): Promise<AccountHarness> {
  const db = await createTestDatabase();
  const stream = testStream();
  const config = accountConfig(serviceEnv(db, stream, extraEnv));
  const lifecycle = new Lifecycle(testLogger());
  const service = await startAccountService(config, testLogger(), lifecycle);
  const target = `127.0.0.1:${service.port}`;
  const accounts = accountsClient(target);
  const ledger = ledgerClient(target);
  return {
    service,
    accounts,
    ledger,
    db,
    stream,
    target,
    async stop() {
      accounts.close();
      ledger.close();
      await lifecycle.stop("test done");
      await Promise.all([db.drop(), stream.delete()]);
    },
  };
}
