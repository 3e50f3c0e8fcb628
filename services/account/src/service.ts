import { AccountService } from "../../../gen/tally/account/v1/account_service_pb";
import { LedgerService } from "../../../gen/tally/account/v1/ledger_service_pb";
import { GrpcServer } from "../../../platform/grpc/server";
import type { Lifecycle } from "../../../platform/lifecycle";
import type { Logger } from "../../../platform/logger";
import type { OutboxRelay } from "../../../platform/outbox/relay";
import { startRuntime } from "../../../platform/runtime";
import type { AccountConfig } from "./config";
import { schema } from "./db/schema";
import { Accounts } from "./domain/accounts";
import { HoldExpiry } from "./domain/hold-expiry";
import { Ledger } from "./domain/ledger";
import { MAX_BATCH } from "./domain/posting";
import { reconcile } from "./domain/reconciliation";
import { accountHandlers } from "./rpc/account-handlers";
import { ledgerHandlers } from "./rpc/ledger-handlers";
import { SERVICE_NAME } from "./service-name";

export interface AccountServiceHandle {
  port: number;
  accounts: Accounts;
  ledger: Ledger;
  relay: OutboxRelay;
  expiry: HoldExpiry;
}

/** Wires the account service: the shared runtime → domain → hold expiry and gRPC server. */
export async function startAccountService(config: AccountConfig, log: Logger, lifecycle: Lifecycle): Promise<AccountServiceHandle> {
  const { database, relay, outbox, nudge } = await startRuntime({ service: SERVICE_NAME, config, schema, log, lifecycle });
  const accounts = new Accounts(database.db, outbox, nudge);
  await accounts.ensureSystemAccounts();
  const ledger = new Ledger(database.db, outbox, nudge, { concurrency: config.LEDGER_CONCURRENT_COMMITS, maxItems: MAX_BATCH });

  const expiry = new HoldExpiry(database.db, outbox, log, config.HOLD_EXPIRY_INTERVAL_MS, nudge);
  expiry.start();
  lifecycle.onStop("hold expiry", () => expiry.stop());

  const server = new GrpcServer({ host: config.GRPC_HOST, port: config.GRPC_PORT, log })
    .add(AccountService, accountHandlers(accounts))
    .add(LedgerService, ledgerHandlers(ledger, () => reconcile(database.db)));
  const port = await server.start();
  lifecycle.onStop("grpc server", () => server.stop(config.SHUTDOWN_GRACE_MS));

  return { port, accounts, ledger, relay, expiry };
}
