import { AccountService } from "../../../gen/tally/account/v1/account_service_pb";
import { LedgerService } from "../../../gen/tally/account/v1/ledger_service_pb";
import { RiskService } from "../../../gen/tally/risk/v1/risk_service_pb";
import { TransactionService } from "../../../gen/tally/transactions/v1/transaction_service_pb";
import { AdmissionLimit } from "../../../platform/admission";
import { createServiceClient } from "../../../platform/grpc/client";
import { GrpcServer } from "../../../platform/grpc/server";
import type { Lifecycle } from "../../../platform/lifecycle";
import type { Logger } from "../../../platform/logger";
import { EventConsumer } from "../../../platform/nats/consumer";
import { startRuntime } from "../../../platform/runtime";
import type { TransactionsConfig } from "./config";
import { schema } from "./db/schema";
import { LEDGER_CONSUMER, ledgerEventHandler, REVIEW_CONSUMER, reviewResolvedHandler } from "./domain/event-handlers";
import { AccountDirectory } from "./domain/account-directory";
import { IdempotencyKeys } from "./domain/idempotency";
import { LedgerGate } from "./domain/ledger-gate";
import { Operations } from "./domain/operations";
import { Orchestrator } from "./domain/orchestrator";
import { Recovery } from "./domain/recovery";
import { RiskGate } from "./domain/risk-gate";
import { Transfers } from "./domain/transfers";
import { transactionHandlers } from "./rpc/transaction-handlers";
import { SERVICE_NAME } from "./service-name";

export interface TransactionsServiceHandle {
  port: number;
  orchestrator: Orchestrator;
  recovery: Recovery;
  riskGate: RiskGate;
}

/**
 * Wires the transactions service: the shared runtime → clients of account,
 * ledger and risk → the orchestrator, operations and recovery → the consumers
 * of review resolutions and ledger expiries → the gRPC server.
 */
export async function startTransactionsService(config: TransactionsConfig, log: Logger, lifecycle: Lifecycle): Promise<TransactionsServiceHandle> {
  const { database, broker, outbox, nudge } = await startRuntime({ service: SERVICE_NAME, config, schema, log, lifecycle });
  const db = database.db;
  const clientOptions = { defaultTimeoutMs: config.GRPC_DEADLINE_MS };
  // Ledger postings are idempotent by their ids, so a lost connection is retried.
  const ledger = createServiceClient(LedgerService, config.ACCOUNT_SERVICE_URL, { ...clientOptions, retryableMethods: ["postTransfers", "lookupTransfers"] });
  const accounts = createServiceClient(AccountService, config.ACCOUNT_SERVICE_URL, { ...clientOptions, retryableMethods: ["getSystemAccount", "getAccount", "lookupAccounts"] });
  // Risk assesses a transfer once, whatever asks again, so a call that found no replica is retried within its deadline.
  const risk = createServiceClient(RiskService, config.RISK_SERVICE_URL, { ...clientOptions, retryableMethods: ["assessTransfers"] });
  lifecycle.onStop("service clients", () => [ledger, accounts, risk].forEach((c) => c.close()));

  const store = new Transfers(db, outbox, nudge);
  const riskGate = new RiskGate(risk, { deadlineMs: config.RISK_DEADLINE_MS, breakerFailures: config.RISK_BREAKER_FAILURES, breakerCooldownMs: config.RISK_BREAKER_COOLDOWN_MS }, log);
  const failpoint = (name: string) => {
    // Test-only: a process killed between steps, as a crash would.
    if (config.FAILPOINT === name) process.kill(process.pid, "SIGKILL");
  };
  const orchestrator = new Orchestrator(store, riskGate, new LedgerGate(ledger), { mode: config.RISK_FALLBACK, approveMax: BigInt(config.RISK_FALLBACK_APPROVE_MAX) }, log, config.DRIVE_LEASE_MS, failpoint);
  const keys = new IdempotencyKeys(db, config.IDEMPOTENCY_TTL_HOURS);
  const operations = new Operations(store, keys, orchestrator, accounts, new AccountDirectory(accounts), {
    holdSeconds: config.HOLD_SECONDS,
    reviewHoldSeconds: config.REVIEW_HOLD_SECONDS,
    // Half a call's deadline: a replay still waiting is told to try again before its caller gives up on it.
    replayWaitMs: config.GRPC_DEADLINE_MS / 2,
  });

  const consumers = [
    new EventConsumer({
      js: broker.js,
      jsm: broker.jsm,
      stream: config.NATS_STREAM,
      durable: `${config.EVENTS_DURABLE}-reviews`,
      filterSubjects: [`${config.NATS_SUBJECT_PREFIX}.risk.review_resolved`],
      log,
      handle: reviewResolvedHandler(db, store, orchestrator),
      retryDelayMs: (attempt) => Math.min(10_000, 200 * 2 ** attempt),
    }),
    new EventConsumer({
      js: broker.js,
      jsm: broker.jsm,
      stream: config.NATS_STREAM,
      durable: `${config.EVENTS_DURABLE}-ledger`,
      filterSubjects: [`${config.NATS_SUBJECT_PREFIX}.account.transfers_posted`],
      log,
      handle: ledgerEventHandler(db, store),
      concurrency: 4,
    }),
  ];
  for (const consumer of consumers) {
    await consumer.start();
    lifecycle.onStop(`${consumer === consumers[0] ? REVIEW_CONSUMER : LEDGER_CONSUMER} consumer`, () => consumer.stop());
  }

  const recovery = new Recovery(store, orchestrator, keys, log, config.RECOVERY_INTERVAL_MS, config.RECOVERY_AFTER_MS);
  recovery.start();
  lifecycle.onStop("recovery", () => recovery.stop());

  const server = new GrpcServer({ host: config.GRPC_HOST, port: config.GRPC_PORT, log }).add(TransactionService, transactionHandlers(operations, store, new AdmissionLimit(config.TRANSFERS_IN_FLIGHT, config.TRANSFERS_QUEUED)));
  const port = await server.start();
  lifecycle.onStop("grpc server", () => server.stop(config.SHUTDOWN_GRACE_MS));

  return { port, orchestrator, recovery, riskGate };
}
