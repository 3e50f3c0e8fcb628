import { context, metrics, propagation, ROOT_CONTEXT, SpanKind, trace, type BatchObservableCallback } from "@opentelemetry/api";
import type { JetStreamClient } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { asc, count, inArray, isNull, lt, min, sql } from "drizzle-orm";
import { getTableConfig, type PgDatabase, type PgQueryResultHKT } from "drizzle-orm/pg-core";
import type { Logger } from "../logger";
import { withinScrape } from "../telemetry/scrape";
import type { OutboxTable } from "./table";

export interface RelayOptions {
  db: PgDatabase<PgQueryResultHKT, Record<string, unknown>>;
  table: OutboxTable;
  js: JetStreamClient;
  log: Logger;
  batchSize: number;
  pollMs: number;
  retentionHours: number;
}

const tracer = trace.getTracer("tally.outbox");
const PRUNE_EVERY_MS = 60_000;

/**
 * Publishes outbox rows to JetStream, oldest first, and marks them sent.
 * Any number of replicas may run one; a transaction-scoped advisory lock lets
 * one publish at a time, so the stream keeps the outbox's order. A row
 * published but not marked (a crash in between) is sent again with the same
 * Nats-Msg-Id, which the stream drops as a duplicate.
 */
export class OutboxRelay {
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private nudged = false;
  private lastPrune = 0;
  published = 0;
  duplicates = 0;
  private readonly meter = metrics.getMeter("tally.outbox");
  private readonly lag = this.meter.createHistogram("outbox.publish.lag", {
    unit: "s",
    description: "From an event's commit to its publication",
    advice: { explicitBucketBoundaries: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] },
  });
  private readonly backlog = this.meter.createObservableGauge("outbox.backlog", { unit: "{event}", description: "Events committed but not yet published" });
  private readonly oldest = this.meter.createObservableGauge("outbox.oldest_unpublished.age", { unit: "s", description: "Age of the oldest unpublished event" });
  private readonly observe: BatchObservableCallback = (result) => this.observeBacklog(result);
  private readonly outbox: string;

  constructor(private readonly options: RelayOptions) {
    this.outbox = getTableConfig(options.table).schema ?? "public";
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
    this.meter.addBatchObservableCallback(this.observe, [this.backlog, this.oldest]);
  }

  /** Publishes soon: called after a commit that wrote events. */
  nudge(): void {
    this.nudged = true;
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.meter.removeBatchObservableCallback(this.observe, [this.backlog, this.oldest]);
    this.running = false;
    this.wake?.();
    await this.loop;
  }

  /** Publishes one batch; returns how many rows it sent (0 also when another replica is publishing). */
  async drainOnce(): Promise<number> {
    const { db, table, js, batchSize } = this.options;
    return db.transaction(async (tx) => {
      // One publisher at a time per outbox keeps the stream in the order events were written;
      // the others stand by and take over the moment it stops.
      const [{ leader }] = (await tx.execute(
        sql`select pg_try_advisory_xact_lock(hashtext(${`tally.outbox.${this.outbox}`})) as leader`,
      )) as unknown as { leader: boolean }[];
      if (!leader) return 0;
      const rows = await tx
        .select()
        .from(table)
        .where(isNull(table.publishedAt))
        .orderBy(asc(table.seq))
        .limit(batchSize)
        .for("update", { skipLocked: true });
      if (rows.length === 0) return 0;
      // Issued in order on one connection, so the stream stores them in order.
      const acks = await Promise.all(
        rows.map((row) => {
          const parent = propagation.extract(ROOT_CONTEXT, row.headers);
          const span = tracer.startSpan(`${row.subject} publish`, {
            kind: SpanKind.PRODUCER,
            attributes: { "messaging.system": "nats", "messaging.destination.name": row.subject, "messaging.message.id": row.id },
          }, parent);
          const h = natsHeaders();
          for (const [key, value] of Object.entries(row.headers)) h.set(key, value);
          const carrier: Record<string, string> = {};
          propagation.inject(trace.setSpan(context.active(), span), carrier);
          for (const [key, value] of Object.entries(carrier)) h.set(key, value);
          return js.publish(row.subject, row.payload, { msgID: row.id, headers: h }).finally(() => span.end());
        }),
      );
      await tx
        .update(table)
        .set({ publishedAt: sql`now()` })
        .where(inArray(table.seq, rows.map((r) => r.seq)));
      this.published += rows.length;
      this.duplicates += acks.filter((a) => a.duplicate).length;
      const now = Date.now();
      for (const row of rows) this.lag.record(Math.max(0, now - row.createdAt.getTime()) / 1000, { outbox: this.outbox });
      return rows.length;
    });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.running) {
      let sent = 0;
      this.nudged = false;
      try {
        sent = await this.drainOnce();
        failures = 0;
        await this.pruneIfDue();
      } catch (err) {
        failures++;
        this.options.log.warn({ err, failures }, "outbox relay failed; will retry");
      }
      // Stopped while publishing: stop() found no sleep to cut short, so do not start one.
      if (!this.running) break;
      // A full batch, or a commit that nudged while this one was publishing: go again at once.
      if (sent === this.options.batchSize || (this.nudged && failures === 0)) continue;
      const backoff = failures === 0 ? this.options.pollMs : Math.min(5000, this.options.pollMs * 2 ** failures);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoff);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** Read when metrics are scraped: how many events wait, and for how long the oldest has. */
  private async observeBacklog(result: Parameters<BatchObservableCallback>[0]): Promise<void> {
    const { db, table } = this.options;
    const [row] = (await withinScrape(db.select({ waiting: count(), since: min(table.createdAt) }).from(table).where(isNull(table.publishedAt)).execute())) ?? [];
    if (!row) return;
    result.observe(this.backlog, row.waiting, { outbox: this.outbox });
    result.observe(this.oldest, row.since ? Math.max(0, (Date.now() - new Date(row.since).getTime()) / 1000) : 0, { outbox: this.outbox });
  }

  /** Sent rows are kept a while for inspection, then deleted. */
  private async pruneIfDue(): Promise<void> {
    if (Date.now() - this.lastPrune < PRUNE_EVERY_MS) return;
    this.lastPrune = Date.now();
    const { db, table, retentionHours } = this.options;
    const cutoff = new Date(Date.now() - retentionHours * 3600_000);
    await db.delete(table).where(lt(table.publishedAt, cutoff));
  }
}
