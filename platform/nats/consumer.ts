import { fromBinary } from "@bufbuild/protobuf";
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type ConsumerConfig,
  type ConsumerInfo,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { ClosedConnectionError, DrainingConnectionError, Match, nanos, type MsgHdrs } from "@nats-io/transport-node";
import { context, metrics, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type BatchObservableCallback, type TextMapGetter } from "@opentelemetry/api";
import { EventEnvelopeSchema, type EventEnvelope } from "../../gen/tally/events/v1/events_pb";
import { isId, normalizeId } from "../ids";
import type { Logger } from "../logger";
import { withinScrape } from "../telemetry/scrape";

export interface Delivery {
  subject: string;
  /** 0 on the first delivery, then how many times the message came again. */
  redeliveryCount: number;
  streamSequence: number;
}

export type EventHandler = (envelope: EventEnvelope, delivery: Delivery) => Promise<void>;

export interface EventConsumerOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  stream: string;
  /** The durable consumer's name; every replica uses the same one and they share the events. */
  durable: string;
  /** Several subjects need a NATS server of 2.10 or later. */
  filterSubjects: string[];
  log: Logger;
  handle: EventHandler;
  /** Deliveries of one message before it is given up (terminated); -1, the default, never gives up. */
  maxDeliver?: number;
  /** How long a delivered message may go unacknowledged before the server sends it again. */
  ackWaitMs?: number;
  /** Messages handled at a time; with 1, one after another in delivery order. */
  concurrency?: number;
  /** Delay before a failed message comes again, given its delivery count (1 for the first). */
  retryDelayMs?: (attempt: number) => number;
}

/** 200 ms, 400 ms, 800 ms, ... at most 30 s. */
export const defaultRetryDelayMs = (attempt: number): number => Math.min(30_000, 200 * 2 ** Math.max(0, attempt - 1));

const tracer = trace.getTracer("tally.inbox");

/**
 * What Prometheus sees of a consumer: messages by outcome, redeliveries and
 * poison messages as counters, handling time, and (read from JetStream when
 * scraped) how many messages wait to be delivered and how many are delivered
 * but not yet acknowledged.
 */
function consumerMetrics(options: EventConsumerOptions) {
  const meter = metrics.getMeter("tally.inbox");
  const group = { "messaging.consumer.group.name": options.durable };
  const outcomes = meter.createCounter("messaging.consumer.messages", { unit: "{message}", description: "Messages handled, by outcome" });
  const redeliveries = meter.createCounter("messaging.consumer.redeliveries", { unit: "{message}", description: "Deliveries that were not a message's first" });
  const poison = meter.createCounter("messaging.consumer.poison_messages", { unit: "{message}", description: "Messages that were not event envelopes, terminated" });
  const duration = meter.createHistogram("messaging.process.duration", {
    unit: "s",
    description: "Time to handle one message",
    advice: { explicitBucketBoundaries: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] },
  });
  const lag = meter.createObservableGauge("messaging.consumer.lag", { unit: "{message}", description: "Messages in the stream not yet delivered to this consumer" });
  const unacked = meter.createObservableGauge("messaging.consumer.unacknowledged", { unit: "{message}", description: "Messages delivered and not yet acknowledged" });
  const observe: BatchObservableCallback = async (result) => {
    const info = await withinScrape(options.jsm.consumers.info(options.stream, options.durable));
    if (!info) return;
    result.observe(lag, info.num_pending, group);
    result.observe(unacked, info.num_ack_pending, group);
  };
  return {
    outcome: (outcome: "processed" | "failed" | "poisoned" | "exhausted") => outcomes.add(1, { ...group, outcome }),
    redelivered: () => redeliveries.add(1, group),
    poisoned: () => poison.add(1, group),
    handled: (startedAt: number) => duration.record((performance.now() - startedAt) / 1000, group),
    watch: () => meter.addBatchObservableCallback(observe, [lag, unacked]),
    unwatch: () => meter.removeBatchObservableCallback(observe, [lag, unacked]),
  };
}

const headerGetter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (headers) => headers?.keys() ?? [],
  get: (headers, key) => {
    if (!headers?.has(key, Match.IgnoreCase)) return undefined;
    return headers.get(key, Match.IgnoreCase);
  },
};

/** Restarting a consumption that ended: quickly at first, then at most every 5 s. */
const restartDelayMs = (failures: number) => (failures === 0 ? 0 : Math.min(5_000, 100 * 2 ** failures));

const isConnectionGone = (err: unknown) => err instanceof ClosedConnectionError || err instanceof DrainingConnectionError;

/** One run of consume(): ended by stop(), by a lost consumer, or by NATS. */
interface Session {
  messages: ConsumerMessages;
  ending: boolean;
}

/**
 * A durable pull consumer of envelopes on the event stream, with explicit
 * acks. A handled event is acked; a handler failure naks it with a delay that
 * grows with its delivery count, for ever unless maxDeliver sets a limit
 * (then it is terminated after that many deliveries). A message that is not an envelope (a poison message) is
 * terminated at once, so it never blocks the events behind it. Delivery is at
 * least once: handlers make their effects idempotent with applyOnce.
 *
 * Each handler runs in a consumer span whose parent is the trace context the
 * producer put in the message headers.
 */
export class EventConsumer {
  /** Events handled and acked. */
  processed = 0;
  /** Handler failures (each one a nak, or a term once the deliveries are used up). */
  failed = 0;
  /** Messages that were not envelopes, terminated. */
  poisoned = 0;
  /** Deliveries that were not a message's first. */
  redelivered = 0;
  /** Events whose handler still failed on their last allowed delivery, terminated. */
  exhausted = 0;

  private readonly maxDeliver: number;
  private readonly ackWaitMs: number;
  private readonly concurrency: number;
  private readonly retryDelayMs: (attempt: number) => number;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly metrics: ReturnType<typeof consumerMetrics>;
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private stopRequested = false;
  private loop: Promise<void> | undefined;
  private session: Session | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly options: EventConsumerOptions) {
    // Unlimited by default: a failure that outlasts every retry (a long outage) must not drop the event.
    this.maxDeliver = options.maxDeliver ?? -1;
    this.ackWaitMs = options.ackWaitMs ?? 30_000;
    this.concurrency = options.concurrency ?? 1;
    this.retryDelayMs = options.retryDelayMs ?? defaultRetryDelayMs;
    this.metrics = consumerMetrics(options);
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) throw new RangeError("concurrency must be a positive integer");
    if (!Number.isInteger(this.maxDeliver) || (this.maxDeliver < 1 && this.maxDeliver !== -1)) {
      throw new RangeError("maxDeliver must be a positive integer, or -1 for no limit");
    }
    if (options.filterSubjects.length === 0) throw new RangeError("filterSubjects must name at least one subject");
  }

  /**
   * Creates the durable consumer, or brings it to this configuration, then
   * consumes in the background. Resolves once the consumer exists.
   */
  start(): Promise<void> {
    if (!this.starting) {
      this.starting = (async () => {
        await this.ensureConsumer();
        if (this.stopRequested) return;
        this.loop = this.run();
        this.metrics.watch();
        const { stream, durable, filterSubjects } = this.options;
        this.options.log.info({ stream, durable, filterSubjects, concurrency: this.concurrency }, "event consumer started");
      })().catch((err: unknown) => {
        // Not started: a later start() may try again.
        this.starting = undefined;
        throw err;
      });
    }
    return this.starting;
  }

  /** Stops fetching, lets the handlers in flight finish (and ack), then resolves. */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopRequested = true;
      this.metrics.unwatch();
      this.stopping = (async () => {
        await this.starting?.catch(() => {});
        this.wake?.();
        this.endSession();
        await this.loop;
        await Promise.all(this.inFlight);
      })();
    }
    return this.stopping;
  }

  /** The durable consumer's configuration; replicas starting together may race, and the losers update. */
  private async ensureConsumer(): Promise<ConsumerInfo> {
    const { jsm, stream, durable, filterSubjects } = this.options;
    const filter =
      filterSubjects.length === 1
        ? { filter_subject: filterSubjects[0], filter_subjects: undefined }
        : { filter_subject: undefined, filter_subjects: filterSubjects };
    const wanted = { ack_wait: nanos(this.ackWaitMs), max_deliver: this.maxDeliver, ...filter };
    for (let attempt = 0; ; attempt++) {
      let existing: ConsumerInfo | undefined;
      try {
        existing = await jsm.consumers.info(stream, durable);
      } catch (err) {
        if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound)) throw err;
      }
      if (existing) {
        const { config } = existing;
        if (config.ack_policy !== AckPolicy.Explicit || config.deliver_policy !== DeliverPolicy.All) {
          throw new Error(`consumer ${durable} on ${stream} exists with ack policy ${config.ack_policy} and deliver policy ${config.deliver_policy}`);
        }
        const current = filterSubjectsOf(config);
        const same =
          config.ack_wait === wanted.ack_wait &&
          config.max_deliver === wanted.max_deliver &&
          current.length === filterSubjects.length &&
          current.every((s, i) => s === filterSubjects[i]);
        return same ? existing : jsm.consumers.update(stream, durable, wanted);
      }
      try {
        return await jsm.consumers.add(stream, {
          durable_name: durable,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          ...wanted,
        });
      } catch (err) {
        // Another replica created it first (with another configuration): update it on the next pass.
        if (attempt >= 3) throw err;
      }
    }
  }

  private async run(): Promise<void> {
    const { js, stream, durable, log } = this.options;
    let failures = 0;
    let first = true;
    while (!this.stopRequested) {
      let received = 0;
      try {
        if (!first) await this.ensureConsumer();
        first = false;
        const consumer = await js.consumers.get(stream, durable);
        // A small buffer: messages waiting here are already delivered, and their ack wait is running.
        const messages = await consumer.consume({ max_messages: Math.max(4, 2 * this.concurrency) });
        const session: Session = { messages, ending: false };
        this.session = session;
        if (this.stopRequested) this.endSession();
        this.watch(session).catch((err: unknown) => log.warn({ err, stream, durable }, "event consumer status watch failed"));
        for await (const msg of messages) {
          received++;
          if (!session.ending) await this.slotFree();
          if (session.ending) {
            // Not started: hand it back at once rather than let its ack wait run out.
            settle(log, msg, "nak", () => msg.nak());
            continue;
          }
          const task: Promise<void> = this.process(msg)
            .catch((err: unknown) => log.error({ err, subject: msg.subject, seq: msg.seq, durable }, "event consumer could not process a message"))
            .finally(() => this.inFlight.delete(task));
          this.inFlight.add(task);
        }
      } catch (err) {
        if (isConnectionGone(err)) {
          log.error({ err, stream, durable }, "event consumer stopped: the NATS connection is closed");
          return;
        }
        log.warn({ err, stream, durable }, "event consumer failed; will restart");
      } finally {
        this.session = undefined;
      }
      if (this.stopRequested) break;
      failures = received > 0 ? 1 : failures + 1;
      log.warn({ stream, durable, failures }, "event consumption ended; restarting");
      await this.sleep(restartDelayMs(failures));
    }
  }

  /** Restarts the consumption when its consumer is gone (deleted, or lost with a server's state). */
  private async watch(session: Session): Promise<void> {
    const { stream, durable, log } = this.options;
    for await (const status of session.messages.status()) {
      switch (status.type) {
        case "consumer_deleted":
        case "consumer_not_found":
        case "stream_not_found":
          if (!session.ending) {
            log.warn({ stream, durable, status: status.type }, "event consumer lost; recreating it");
            this.endSession(session);
          }
          break;
        case "heartbeats_missed":
          log.warn({ stream, durable, missed: status.count }, "event consumer heartbeats missed");
          break;
        case "exceeded_limits":
          log.warn({ stream, durable, description: status.description }, "event consumer pull refused");
          break;
        default:
      }
    }
  }

  private endSession(session = this.session): void {
    if (!session || session.ending) return;
    session.ending = true;
    session.messages.close().catch(() => {});
  }

  private async slotFree(): Promise<void> {
    while (this.inFlight.size >= this.concurrency) await Promise.race(this.inFlight);
  }

  /** Handles one message: acks, naks or terms it. */
  private async process(msg: JsMsg): Promise<void> {
    const { log, durable, handle } = this.options;
    const { deliveryCount, streamSequence } = msg.info;
    const subject = msg.subject;
    const redeliveryCount = deliveryCount - 1;
    if (redeliveryCount > 0) {
      this.redelivered++;
      this.metrics.redelivered();
    }

    const envelope = decode(msg.data);
    if (envelope instanceof Error) {
      this.poisoned++;
      this.metrics.poisoned();
      this.metrics.outcome("poisoned");
      log.error({ err: envelope, subject, seq: streamSequence, durable, redeliveryCount }, "poison message terminated");
      settle(log, msg, "term", () => msg.term());
      return;
    }

    const parent = propagation.extract(ROOT_CONTEXT, msg.headers, headerGetter);
    const span = tracer.startSpan(
      `${subject} process`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          "messaging.system": "nats",
          "messaging.operation.type": "process",
          "messaging.destination.name": subject,
          "messaging.consumer.group.name": durable,
          "messaging.message.id": envelope.id,
          "messaging.nats.redelivery_count": redeliveryCount,
          "messaging.nats.stream_sequence": streamSequence,
        },
      },
      parent,
    );
    const startedAt = performance.now();
    await context.with(trace.setSpan(parent, span), async () => {
      const fields = { subject, seq: streamSequence, eventId: envelope.id, type: envelope.type, durable, redeliveryCount };
      try {
        await handle(envelope, { subject, redeliveryCount, streamSequence });
        this.processed++;
        this.metrics.outcome("processed");
        log.debug(fields, "event handled");
        settle(log, msg, "ack", () => msg.ack());
      } catch (err) {
        this.failed++;
        span.recordException(err instanceof Error ? err : String(err));
        span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
        if (this.maxDeliver > 0 && deliveryCount >= this.maxDeliver) {
          this.exhausted++;
          this.metrics.outcome("exhausted");
          log.error({ err, ...fields, maxDeliver: this.maxDeliver }, "event handler failed on its last delivery; event terminated");
          settle(log, msg, "term", () => msg.term());
        } else {
          const delayMs = this.retryDelayMs(deliveryCount);
          this.metrics.outcome("failed");
          log.warn({ err, ...fields, delayMs }, "event handler failed; will retry");
          settle(log, msg, "nak", () => msg.nak(delayMs));
        }
      } finally {
        this.metrics.handled(startedAt);
        span.end();
      }
    });
  }

  private sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.stopRequested) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    }).finally(() => {
      this.wake = undefined;
    });
  }
}

/** The envelope a message carries, or why it is not one. */
function decode(data: Uint8Array): EventEnvelope | Error {
  try {
    const envelope = fromBinary(EventEnvelopeSchema, data);
    // Without a valid id it cannot be recorded in an inbox, so it could never be applied.
    if (!isId(envelope.id)) return new Error(`not an event envelope: id ${JSON.stringify(envelope.id.slice(0, 64))}`);
    // One spelling per event, so handlers that key on the id (group commits, inbox lookups) agree.
    envelope.id = normalizeId(envelope.id);
    return envelope;
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/** Acks, naks or terms; the connection may be gone, in which case the server redelivers later. */
function settle(log: Logger, msg: JsMsg, action: string, run: () => void): void {
  try {
    run();
  } catch (err) {
    log.warn({ err, subject: msg.subject, seq: msg.seq, action }, "could not settle message; it will be redelivered");
  }
}

function filterSubjectsOf(config: ConsumerConfig): string[] {
  if (config.filter_subjects?.length) return config.filter_subjects;
  return config.filter_subject ? [config.filter_subject] : [];
}
