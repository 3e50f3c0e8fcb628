import path from "node:path";
import { AccountService } from "../../../gen/tally/account/v1/account_service_pb";
import { LedgerService } from "../../../gen/tally/account/v1/ledger_service_pb";
import { connectDatabase } from "../../../platform/db/connect";
import { migrateSchema } from "../../../platform/db/migrate";
import { GrpcServer } from "../../../platform/grpc/server";
import type { Lifecycle } from "../../../platform/lifecycle";
import type { Logger } from "../../../platform/logger";
import { connectBroker } from "../../../platform/nats/connect";
import { ensureStream } from "../../../platform/nats/stream";
import { OutboxRelay } from "../../../platform/outbox/relay";
import { projectRoot } from "../../../platform/project-root";
import type { AccountConfig } from "./config";
import { SERVICE_NAME } from "./service-name";
import { schema } from "./db/schema";
import { Accounts } from "./domain/accounts";
import { HoldExpiry } from "./domain/hold-expiry";
import { Ledger } from "./domain/ledger";
import { reconcile } from "./domain/reconciliation";
import { accountHandlers } from "./rpc/account-handlers";
import { ledgerHandlers } from "./rpc/ledger-handlers";


export interface AccountServiceHandle {
  port: number;
  accounts: Accounts;
  ledger: Ledger;
  relay: OutboxRelay;
  expiry: HoldExpiry;
}

/**
 * Wires the account service: migrations → database → broker and stream →
 * domain → gRPC server, relay and hold expiry. Each part registers how it
 * stops, so the lifecycle unwinds it in reverse.
 */
export async function startAccountService(config: AccountConfig, log: Logger, lifecycle: Lifecycle): Promise<AccountServiceHandle> {
  await migrateSchema({
    url: config.DATABASE_URL,
    schema: SERVICE_NAME,
    migrationsFolder: path.join(projectRoot(), "services/account/migrations"),
    log,
  });
  const database = connectDatabase({ url: config.DATABASE_URL, poolSize: config.DATABASE_POOL_SIZE, log, applicationName: SERVICE_NAME }, schema);
  lifecycle.onStop("database", database.close);

  const broker = await connectBroker(config.NATS_URL, SERVICE_NAME, log);
  lifecycle.onStop("nats", broker.close);
  await ensureStream(broker.jsm, {
    name: config.NATS_STREAM,
    subjectPrefix: config.NATS_SUBJECT_PREFIX,
    duplicateWindowMs: config.NATS_DUPLICATE_WINDOW_MS,
    maxAgeDays: config.NATS_MAX_AGE_DAYS,
    replicas: config.NATS_STREAM_REPLICAS,
  });

  const outbox = { table: schema.outbox, source: SERVICE_NAME, subjectPrefix: config.NATS_SUBJECT_PREFIX };
  const relay = new OutboxRelay({
    db: database.db,
    table: schema.outbox,
    js: broker.js,
    log,
    batchSize: config.OUTBOX_BATCH_SIZE,
    pollMs: config.OUTBOX_POLL_MS,
    retentionHours: config.OUTBOX_RETENTION_HOURS,
  });
  const nudge = () => relay.nudge();
  const accounts = new Accounts(database.db, outbox, nudge);
  await accounts.ensureSystemAccounts();
  const ledger = new Ledger(database.db, outbox, nudge);
  const expiry = new HoldExpiry(database.db, outbox, log, config.HOLD_EXPIRY_INTERVAL_MS, nudge);

  relay.start();
  lifecycle.onStop("outbox relay", () => relay.stop());
  expiry.start();
  lifecycle.onStop("hold expiry", () => expiry.stop());

  const server = new GrpcServer({ host: config.GRPC_HOST, port: config.GRPC_PORT, log })
    .add(AccountService, accountHandlers(accounts))
    .add(LedgerService, ledgerHandlers(ledger, () => reconcile(database.db)));
  const port = await server.start();
  lifecycle.onStop("grpc server", () => server.stop(config.SHUTDOWN_GRACE_MS));

  return { port, accounts, ledger, relay, expiry };
}
