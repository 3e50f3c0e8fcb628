import { context, metrics, propagation, ROOT_CONTEXT, SpanKind, trace, type BatchObservableCallback } from "@opentelemetry/api";
import { JetStreamApiError, type JetStreamClient, type PubAck } from "@nats-io/jetstream";
import { headers as natsHeaders, InvalidArgumentError } from "@nats-io/transport-node";
import { and, asc, count, inArray, isNull, lt, min, not, sql, type SQL } from "drizzle-orm";
import { getTableConfig, type PgDatabase, type PgQueryResultHKT } from "drizzle-orm/pg-core";
import { connectDatabase, type Database } from "../db/connect";
import type { Logger } from "../logger";
import { withinScrape } from "../telemetry/scrape";
import type { OutboxTable } from "./table";

export interface RelayOptions {
  /** The service's pool: the backlog's metrics and pruning. */
  db: PgDatabase<PgQueryResultHKT, Record<string, unknown>>;
  /** The database, for the relay's own connection: its session holds the leadership. */
  url: string;
  /** Name its connection has in pg_stat_activity. */
  applicationName: string;
  table: OutboxTable;
  js: JetStreamClient;
  log: Logger;
  batchSize: number;
  pollMs: number;
  retentionHours: number;
}

const tracer = trace.getTracer("tally.outbox");
const PRUNE_EVERY_MS = 60_000;
// Rows published are marked sent by the next pass, which comes this soon at the latest.
const MARK_WITHIN_MS = 250;
// Passes in which the stream refused a row while taking the rows after it, before the row is parked.
const PARK_AFTER = 3;

type OutboxRow = OutboxTable["$inferSelect"];

/** No stream answered for the subject (nats.js does not export this error's class). */
const noStreamAnswered = (err: unknown) => err instanceof Error && err.name === "JetStreamNotEnabled";

/**
 * Publishes outbox rows to JetStream, oldest first, and marks them sent.
 * Any number of replicas may run one; one of them leads and publishes, so the
 * stream keeps the outbox's order. The leader holds a session-level advisory
 * lock on a connection of its own, from pass to pass, so a pass is one
 * statement with no transaction: it marks the rows the pass before published
 * (within MARK_WITHIN_MS) and reads the next. The others try for the lock at
 * each poll and take over the moment its connection closes. A replica that is
 * not leading and commits events tells the leader (NOTIFY, which the leader
 * LISTENs for), so its events go out at once too. A relay that loses the lead
 * marks what it published still; a row published but never marked (the leader
 * frozen or gone first) is sent again with the same Nats-Msg-Id, which the
 * stream drops as a duplicate. A row the stream will not take while it takes
 * the rows after it (a subject outside the stream, a payload over its limit)
 * is parked after a few passes rather than hold back every event behind it.
 */
export class OutboxRelay {
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private nudged = false;
  /** Another replica said it committed events (while this one leads). */
  private told = false;
  private lastPrune = 0;
  published = 0;
  duplicates = 0;
  /** Rows this relay published that are not yet marked sent: the next pass's read marks them. */
  private unmarked: bigint[] = [];
  /** Rows the stream refused for themselves, by seq: in how many passes in a row (see judgeRefusals()). */
  private readonly refusals = new Map<bigint, number>();
  private readonly meter = metrics.getMeter("tally.outbox");
  private readonly lag = this.meter.createHistogram("outbox.publish.lag", {
    unit: "s",
    description: "From an event's commit to its publication",
    advice: { explicitBucketBoundaries: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] },
  });
  private readonly backlog = this.meter.createObservableGauge("outbox.backlog", { unit: "{event}", description: "Events committed but not yet published" });
  private readonly oldest = this.meter.createObservableGauge("outbox.oldest_unpublished.age", { unit: "s", description: "Age of the oldest unpublished event" });
  private readonly parked = this.meter.createObservableGauge("outbox.parked", { unit: "{event}", description: "Events set aside: the stream would not take them" });
  private readonly observe: BatchObservableCallback = (result) => this.observeBacklog(result);
  private readonly outbox: string;
  /** The advisory lock the leader of this outbox holds, whichever replica it is. */
  private readonly lockKey: string;
  /** The channel on which the other replicas tell the leader they committed events. */
  private readonly channel: string;
  /** While leading: stops listening on the channel. */
  private unlisten: (() => Promise<void>) | undefined;
  /** The relay's own connection, opened when first needed; its session holds the lock while this relay leads. */
  private own: Database<Record<string, never>> | undefined;
  /** Whether this relay holds the lock: false again the moment its connection closes, since the lock went with it. */
  private leader = false;
  /**
   * A leader's session ends after this long idle (a paused process, a lost
   * host), and its lock with it; well inside the stream's duplicate window.
   */
  private readonly frozenMs: number;

  constructor(private readonly options: RelayOptions) {
    this.outbox = getTableConfig(options.table).schema ?? "public";
    this.lockKey = `tally.outbox.${this.outbox}`;
    this.channel = `tally_outbox_${this.outbox}`;
    this.frozenMs = Math.max(10_000, 5 * options.pollMs);
  }

  private get session(): Database<Record<string, never>> {
    const { url, log, applicationName } = this.options;
    this.own ??= connectDatabase({ url, poolSize: 1, log, applicationName, idleTimeoutSeconds: 0, onClose: () => (this.leader = false) }, {});
    return this.own;
  }

  /** Whether this relay leads (publishes) now. */
  get leading(): boolean {
    return this.leader;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
    this.meter.addBatchObservableCallback(this.observe, [this.backlog, this.oldest, this.parked]);
  }

  /** Publishes soon: called after a commit that wrote events. */
  nudge(): void {
    this.nudged = true;
    this.wake?.();
  }

  /** Stops publishing; closing its connection hands the lead to another replica. */
  async stop(): Promise<void> {
    this.meter.removeBatchObservableCallback(this.observe, [this.backlog, this.oldest, this.parked]);
    this.running = false;
    this.wake?.();
    await this.loop;
    await this.markPublished().catch((err: unknown) => this.options.log.warn({ err }, "outbox relay could not mark its last rows sent; they will be sent again, and dropped as copies"));
    const own = this.own;
    this.own = undefined;
    this.leader = false;
    this.unlisten = undefined;
    // Its listening connection closes with it.
    await own?.close();
  }

  /**
   * Publishes one batch; returns how many rows it sent (0 also when another replica leads). The
   * rows it sends are marked by the next pass's read, in the same statement (see read()).
   */
  async drainOnce(): Promise<number> {
    if (!this.leader) await this.tryToLead();
    if (!this.leader) {
      // It lost the lead after publishing: its last rows went out all the same.
      await this.markPublished();
      return 0;
    }
    const readAt = Date.now();
    // Still unmarked until the read that marks them has returned (the backlog leaves them out till then).
    const rows = await this.read(this.unmarked);
    this.unmarked = [];
    // The connection closed since the lock was taken: the read ran on a new session, without it.
    if (!this.leader || rows.length === 0) return 0;
    // Frozen since the read, perhaps long enough to lose the lock while another
    // relay published these rows and more: its close may not have been seen yet.
    // Read again rather than publish rows that may be stale, out of order.
    if (Date.now() - readAt > this.frozenMs / 2) return 0;
    // Issued in order on one connection, so the stream stores them in order.
    const results = await Promise.allSettled(rows.map((row) => this.publish(row)));
    const stored = rows.filter((_, i) => results[i].status === "fulfilled");
    this.unmarked = stored.map((r) => r.seq);
    this.published += stored.length;
    this.duplicates += results.filter((r) => r.status === "fulfilled" && r.value.duplicate).length;
    const now = Date.now();
    for (const row of stored) this.lag.record(Math.max(0, now - row.createdAt.getTime()) / 1000, { outbox: this.outbox });
    // A row once refused and now taken is judged no more (almost always there is none).
    if (this.refusals.size > 0) for (const row of stored) this.refusals.delete(row.seq);
    if (stored.length < rows.length) await this.judgeRefusals(rows, results);
    return stored.length;
  }

  /** Publishes one row, with the trace context of the transaction that wrote it; async, so a header it cannot send is its refusal. */
  private async publish(row: OutboxRow): Promise<PubAck> {
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
    return this.options.js.publish(row.subject, row.payload, { msgID: row.id, headers: h }).finally(() => span.end());
  }

  /**
   * The rows of a pass the stream did not take. A row is at fault, not the stream nor the
   * connection, when the client refused it for itself (a payload over the server's limit, a bad
   * header), or when the stream refused it (no stream for its subject, an API error such as its
   * size) while it took a row sent after it. A row at fault in PARK_AFTER passes is parked, so the
   * events behind it go on; a pass that refuses it for any other reason (a timeout, a lost
   * connection: the outage may have been the cause all along) starts its count again, and is
   * thrown: the relay backs off, and the rows are sent again.
   */
  private async judgeRefusals(rows: OutboxRow[], results: PromiseSettledResult<PubAck>[]): Promise<void> {
    const lastTaken = results.findLastIndex((r) => r.status === "fulfilled");
    let unexplained: unknown;
    for (const [i, result] of results.entries()) {
      if (result.status === "fulfilled") continue;
      const row = rows[i];
      const { reason } = result;
      const refusedByStream = noStreamAnswered(reason) || reason instanceof JetStreamApiError;
      if (reason instanceof InvalidArgumentError || (refusedByStream && i < lastTaken)) {
        const passes = (this.refusals.get(row.seq) ?? 0) + 1;
        this.refusals.set(row.seq, passes);
        if (passes >= PARK_AFTER) await this.park(row, reason);
        continue;
      }
      // Refused alone in the same way: no sign either way, so its count stands.
      if (!refusedByStream) this.refusals.delete(row.seq);
      unexplained ??= reason;
    }
    if (unexplained !== undefined) throw unexplained;
  }

  /** Sets a row aside, with why, for an operator to fix and send again. */
  private async park(row: OutboxRow, reason: unknown): Promise<void> {
    const { table, log } = this.options;
    const why = reason instanceof Error ? reason.message : String(reason);
    await this.session.db.update(table).set({ parkedAt: sql`now()`, parkReason: why }).where(and(this.among([row.seq]), isNull(table.publishedAt)));
    this.refusals.delete(row.seq);
    log.error({ outbox: this.outbox, seq: String(row.seq), event: row.id, subject: row.subject, reason: why }, "the stream would not take an event that the events after it went past; it is parked, and the relay goes on");
  }

  /**
   * The next rows to publish, oldest first. The rows published last are marked sent by the same
   * statement: a pass is one round trip, not a read and then a mark. The read sees the table as
   * it was before the mark, so it leaves those rows out itself.
   */
  private read(published: bigint[]) {
    const { table, batchSize } = this.options;
    const { db } = this.session;
    if (published.length === 0) return db.select().from(table).where(and(isNull(table.publishedAt), isNull(table.parkedAt))).orderBy(asc(table.seq)).limit(batchSize);
    const marked = db.$with("marked", { seq: table.seq }).as(sql`update ${table} set published_at = now() where ${this.among(published)} and published_at is null returning seq`);
    return db
      .with(marked)
      .select()
      .from(table)
      .where(and(isNull(table.publishedAt), isNull(table.parkedAt), not(this.among(published))))
      .orderBy(asc(table.seq))
      .limit(batchSize);
  }

  /** The rows of `seqs`: one array parameter, whatever the count, so one statement text, prepared once. */
  private among(seqs: bigint[]): SQL {
    return sql`${this.options.table.seq} = any(${`{${seqs.join(",")}}`}::bigint[])`;
  }

  /**
   * Marks the rows published last when no further pass of this relay's will: it stops, or lost the
   * lead. On the service's pool, leading or not: the stream has them, whoever publishes next.
   */
  private async markPublished(): Promise<void> {
    const published = this.unmarked;
    this.unmarked = [];
    if (published.length === 0) return;
    const { db, table } = this.options;
    await db.update(table).set({ publishedAt: sql`now()` }).where(and(inArray(table.seq, published), isNull(table.publishedAt)));
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.running) {
      let sent = 0;
      const nudged = this.nudged;
      this.nudged = false;
      this.told = false;
      try {
        sent = await this.drainOnce();
        // Events committed here, and another replica leads: tell it.
        if (nudged && !this.leader) await this.session.sql`select pg_notify(${this.channel}, '')`;
        failures = 0;
        await this.pruneIfDue();
      } catch (err) {
        failures++;
        this.options.log.warn({ err, failures }, "outbox relay failed; will retry");
        // Another replica may publish where this one cannot (its NATS connection, say).
        await this.resign();
      }
      // Stopped while publishing: stop() found no sleep to cut short, so do not start one.
      if (!this.running) break;
      // A full batch, or a commit (here or on another replica) while this one was publishing: go again at once.
      if (sent === this.options.batchSize || ((this.nudged || this.told) && failures === 0)) continue;
      // Rows published and not yet marked are marked by the next pass: soon, even with nothing new to send.
      const idle = this.unmarked.length > 0 ? Math.min(this.options.pollMs, MARK_WITHIN_MS) : this.options.pollMs;
      const backoff = failures === 0 ? idle : Math.min(5000, this.options.pollMs * 2 ** failures);
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

  /** Takes the lead if no one has it, and then listens for the other replicas' word of new events. */
  private async tryToLead(): Promise<void> {
    const { sql: session } = this.session;
    // A leader frozen for longer than a few polls (a paused process, a lost host) loses its session, and the lock with it.
    const [{ leader }] = await session<{ leader: boolean }[]>`
      select pg_try_advisory_lock(hashtext(${this.lockKey})) as leader, set_config('idle_session_timeout', ${String(this.frozenMs)}, false)`;
    this.leader = leader;
    if (leader && !this.unlisten) {
      const { unlisten } = await session.listen(this.channel, () => {
        this.told = true;
        this.wake?.();
      });
      this.unlisten = unlisten;
    }
    // Its connection closed since it led: the word is for the leader now.
    if (!leader) await this.stopListening();
  }

  /** Lets the lead go, if this relay has it: a failure here need not stop every replica's events. */
  private async resign(): Promise<void> {
    if (!this.leader) return;
    this.leader = false;
    // If the database fails this too, whoever leads next sends them again, and the stream drops the copies.
    await this.markPublished().catch(() => {});
    await this.stopListening();
    try {
      await this.session.sql`select pg_advisory_unlock(hashtext(${this.lockKey}))`;
    } catch {
      // The lock may still be held (a session-level lock stacks if taken again):
      // closing the connection surely lets it go.
      const own = this.own;
      this.own = undefined;
      await own?.close().catch(() => {});
    }
  }

  private async stopListening(): Promise<void> {
    const unlisten = this.unlisten;
    this.unlisten = undefined;
    await unlisten?.().catch(() => {});
  }

  /** Read when metrics are scraped: how many events wait, and for how long the oldest has. */
  private async observeBacklog(result: Parameters<BatchObservableCallback>[0]): Promise<void> {
    const backlog = await withinScrape(this.backlogNow());
    if (!backlog) return;
    result.observe(this.backlog, backlog.waiting, { outbox: this.outbox });
    result.observe(this.oldest, backlog.oldestSeconds, { outbox: this.outbox });
    result.observe(this.parked, backlog.parked, { outbox: this.outbox });
  }

  /**
   * The events committed and not yet published, and the age of the oldest (0 with none): what the
   * outbox.backlog gauges report. Rows this relay has published count as sent, though its next
   * pass has yet to mark them; a replica that does not lead cannot tell them apart, and counts the
   * leader's last batch for as long as it is unmarked (250 ms at most). Parked rows are counted
   * apart (outbox.parked): they wait for an operator, not for the relay.
   */
  async backlogNow(): Promise<{ waiting: number; oldestSeconds: number; parked: number }> {
    const { db, table } = this.options;
    const unsent = this.unmarked.length > 0 ? not(this.among(this.unmarked)) : undefined;
    const waiting = isNull(table.parkedAt);
    const [row] = await db
      .select({ waiting: count(sql`case when ${waiting} then 1 end`), since: min(sql<Date | null>`case when ${waiting} then ${table.createdAt} end`), parked: count(table.parkedAt) })
      .from(table)
      .where(and(isNull(table.publishedAt), unsent));
    return { waiting: row.waiting, oldestSeconds: row.since ? Math.max(0, (Date.now() - new Date(row.since).getTime()) / 1000) : 0, parked: row.parked };
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
