import path from "node:path";
import type { PlatformConfig } from "./config";
import { connectDatabase, type Database } from "./db/connect";
import { migrateSchema } from "./db/migrate";
import { waitForDatabase } from "./db/wait";
import type { Lifecycle } from "./lifecycle";
import type { Logger } from "./logger";
import { connectBroker, type Broker } from "./nats/connect";
import { ensureStream } from "./nats/stream";
import type { OutboxWriter } from "./outbox/append";
import { OutboxRelay } from "./outbox/relay";
import type { OutboxTable } from "./outbox/table";
import { projectRoot } from "./project-root";

export interface RuntimeOptions<TSchema extends Record<string, unknown> & { outbox: OutboxTable }> {
  /** The service's name: its PostgreSQL schema, its event source and its connection names. */
  service: string;
  config: PlatformConfig;
  schema: TSchema;
  log: Logger;
  lifecycle: Lifecycle;
}

export interface Runtime<TSchema extends Record<string, unknown>> {
  database: Database<TSchema>;
  broker: Broker;
  relay: OutboxRelay;
  outbox: OutboxWriter;
  /** Publishes soon: pass it to whatever commits events. */
  nudge: () => void;
}

/**
 * What every service starts with, in order: PostgreSQL answering, its migrations, its database pool,
 * NATS and the event stream, and the relay of its outbox. Each part registers
 * how it stops, so the lifecycle unwinds them in reverse.
 */
export async function startRuntime<TSchema extends Record<string, unknown> & { outbox: OutboxTable }>(
  options: RuntimeOptions<TSchema>,
): Promise<Runtime<TSchema>> {
  const { service, config, schema, log, lifecycle } = options;
  await waitForDatabase(config.DATABASE_URL, log, config.DEPENDENCY_WAIT_MS);
  await migrateSchema({
    url: config.DATABASE_URL,
    schema: service,
    migrationsFolder: path.join(projectRoot(), "services", service, "migrations"),
    log,
  });
  const database = connectDatabase({ url: config.DATABASE_URL, poolSize: config.DATABASE_POOL_SIZE, log, applicationName: service }, schema);
  lifecycle.onStop("database", database.close);

  const broker = await connectBroker(config.NATS_URL, service, log, config.DEPENDENCY_WAIT_MS);
  lifecycle.onStop("nats", broker.close);
  await ensureStream(broker.jsm, {
    name: config.NATS_STREAM,
    subjectPrefix: config.NATS_SUBJECT_PREFIX,
    duplicateWindowMs: config.NATS_DUPLICATE_WINDOW_MS,
    maxAgeDays: config.NATS_MAX_AGE_DAYS,
    replicas: config.NATS_STREAM_REPLICAS,
  });

  const relay = new OutboxRelay({
    db: database.db,
    url: config.DATABASE_URL,
    applicationName: `${service} outbox relay`,
    table: schema.outbox,
    js: broker.js,
    log,
    batchSize: config.OUTBOX_BATCH_SIZE,
    pollMs: config.OUTBOX_POLL_MS,
    retentionHours: config.OUTBOX_RETENTION_HOURS,
  });
  relay.start();
  lifecycle.onStop("outbox relay", () => relay.stop());

  return {
    database,
    broker,
    relay,
    outbox: { table: schema.outbox, source: service, subjectPrefix: config.NATS_SUBJECT_PREFIX },
    nudge: () => relay.nudge(),
  };
}
