import { lt } from "drizzle-orm";
import { AccountService } from "../../../gen/tally/account/v1/account_service_pb";
import { RiskService } from "../../../gen/tally/risk/v1/risk_service_pb";
import { createServiceClient } from "../../../platform/grpc/client";
import { GrpcServer } from "../../../platform/grpc/server";
import type { Lifecycle } from "../../../platform/lifecycle";
import type { Logger } from "../../../platform/logger";
import { EventConsumer } from "../../../platform/nats/consumer";
import { PeriodicTask } from "../../../platform/periodic";
import { startRuntime } from "../../../platform/runtime";
import { checkThresholds, type RiskConfig } from "./config";
import { schema } from "./db/schema";
import { Alerts } from "./domain/alerts";
import { Assessor } from "./domain/assessor";
import { AccountFactsSource } from "./domain/facts";
import { ledgerEventHandler } from "./domain/ledger-events";
import { Monitoring } from "./domain/monitoring";
import { Profiles } from "./domain/profiles";
import { Reviews } from "./domain/reviews";
import { RuleSet } from "./domain/rule-set";
import { RuleStore } from "./domain/rules";
import { riskHandlers } from "./rpc/risk-handlers";
import { SERVICE_NAME } from "./service-name";

export interface RiskServiceHandle {
  port: number;
  consumer: EventConsumer;
  profiles: Profiles;
  ruleSet: RuleSet;
}

const PRUNE_EVERY_MS = 60_000;

/**
 * Wires the risk service: the shared runtime → the account service client →
 * rules, profiles, assessments, reviews and monitoring → the ledger-event
 * consumer and the gRPC server.
 */
export async function startRiskService(config: RiskConfig, log: Logger, lifecycle: Lifecycle): Promise<RiskServiceHandle> {
  checkThresholds(config);
  const { database, broker, outbox, nudge } = await startRuntime({ service: SERVICE_NAME, config, schema, log, lifecycle });
  const db = database.db;
  const accountService = createServiceClient(AccountService, config.ACCOUNT_SERVICE_URL, {
    defaultTimeoutMs: config.GRPC_DEADLINE_MS,
    retryableMethods: ["getAccount", "freezeAccount"],
  });
  lifecycle.onStop("account service client", () => accountService.close());

  const rules = new RuleStore(db);
  const ruleSet = new RuleSet(rules, config.RULES_REFRESH_MS, log);
  rules.onChange(() => ruleSet.invalidate());
  await rules.ensureDefaults();
  const profiles = new Profiles(db);
  const assessor = new Assessor(db, ruleSet, new AccountFactsSource(db, accountService, log, config.ACCOUNT_LOOKUP_TIMEOUT_MS), profiles, outbox, {
    reviewScore: config.RISK_REVIEW_SCORE,
    declineScore: config.RISK_DECLINE_SCORE,
  }, nudge);
  const reviews = new Reviews(db, outbox, nudge);
  const monitoring = new Monitoring(ruleSet, profiles, accountService, outbox, log);

  const consumer = new EventConsumer({
    js: broker.js,
    jsm: broker.jsm,
    stream: config.NATS_STREAM,
    durable: config.EVENTS_DURABLE,
    filterSubjects: [`${config.NATS_SUBJECT_PREFIX}.account.>`],
    // Profile increments commute and the account view keeps the newest version, so events may apply side by side.
    concurrency: config.EVENTS_CONCURRENCY,
    log,
    handle: ledgerEventHandler(db, profiles, monitoring),
  });
  await consumer.start();
  lifecycle.onStop("ledger event consumer", () => consumer.stop());

  const prune = async () => {
    await profiles.prune();
    // An event older than the stream keeps can no longer be redelivered: its inbox row has done its work.
    await db.delete(schema.inbox).where(lt(schema.inbox.appliedAt, new Date(Date.now() - (config.NATS_MAX_AGE_DAYS + 1) * 86_400_000)));
  };
  const pruning = new PeriodicTask("pruning", prune, PRUNE_EVERY_MS, log);
  pruning.start();
  lifecycle.onStop("pruning", () => pruning.stop());

  const server = new GrpcServer({ host: config.GRPC_HOST, port: config.GRPC_PORT, log }).add(
    RiskService,
    riskHandlers({ assessor, rules, reviews, alerts: new Alerts(db), profiles }),
  );
  const port = await server.start();
  lifecycle.onStop("grpc server", () => server.stop(config.SHUTDOWN_GRACE_MS));

  return { port, consumer, profiles, ruleSet };
}
