import { randomBytes } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { headers as natsHeaders, nanos } from "@nats-io/transport-node";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import { count, eq } from "drizzle-orm";
import { pgSchema, serial, uuid } from "drizzle-orm/pg-core";
import { AccountOpenedSchema, EventEnvelopeSchema, type EventEnvelope } from "../../gen/tally/events/v1/events_pb";
import { createTestDatabase, provisionedTestStream, testLogger, TEST_NATS_URL, type TestDatabase, type TestStream } from "../../test/support/infra";
import { recordMetrics } from "../../test/support/metrics";
import { recordSpans } from "../../test/support/tracing";
import { connectDatabase, type Database } from "../db/connect";
import { newId } from "../ids";
import { applyOnce } from "../inbox/apply-once";
import { inboxTable } from "../inbox/table";
import { buildEnvelope } from "../outbox/append";
import { connectBroker, type Broker } from "./connect";
import { EventConsumer, defaultRetryDelayMs, type Delivery, type EventConsumerOptions } from "./consumer";
import { eventSubject } from "./subjects";

/**
 * EventConsumer against the real NATS server, each test on a private stream;
 * the exactly-once checks add a real PostgreSQL inbox.
 */

const log = testLogger();
let broker: Broker;
let database: TestDatabase;
let store: Database<Record<string, never>>;
const streams: TestStream[] = [];
const consumers: EventConsumer[] = [];

const testSchema = pgSchema("consumer_test");
const inbox = inboxTable(testSchema);
/** One row each time a handler's effect is applied. */
const effects = testSchema.table("effects", {
  seq: serial("seq").primaryKey(),
  eventId: uuid("event_id").notNull(),
});

beforeAll(async () => {
  broker = await connectBroker(TEST_NATS_URL, "event-consumer-test", log);
  database = await createTestDatabase();
  store = connectDatabase({ url: database.url, poolSize: 10, log, applicationName: "event-consumer-test" }, {});
  const statements = await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ testSchema, inbox, effects }));
  for (const statement of statements) await store.sql.unsafe(statement);
});

afterAll(async () => {
  await Promise.all(consumers.map((c) => c.stop()));
  await Promise.all(streams.map((s) => s.delete()));
  await broker?.close();
  await store?.close();
  await database?.drop();
});

const newStream = () => provisionedTestStream(broker.jsm, streams);

const newDurable = () => `test_${newId().replace(/-/g, "").slice(-12)}`;

function accountOpened(): EventEnvelope {
  const id = newId();
  return buildEnvelope("account", {
    subjectId: id,
    payload: { case: "accountOpened", value: create(AccountOpenedSchema, { account: { id, customerId: "cust-1", currency: "EUR" } }) },
  });
}

const subjectOf = (stream: TestStream, e: EventEnvelope) => eventSubject(stream.subjectPrefix, e.source, e.type);

/** Publishes the envelopes in order, as the outbox relay does; returns them. */
async function publish(stream: TestStream, envelopes: EventEnvelope[]): Promise<EventEnvelope[]> {
  for (const e of envelopes) await broker.js.publish(subjectOf(stream, e), toBinary(EventEnvelopeSchema, e), { msgID: e.id });
  return envelopes;
}

const publishEvents = (stream: TestStream, n: number) => publish(stream, Array.from({ length: n }, accountOpened));

type Overrides = Partial<Omit<EventConsumerOptions, "js" | "jsm" | "stream" | "log">>;

/** An event consumer on the stream, stopped after the suite. */
function newConsumer(stream: TestStream, handle: EventConsumerOptions["handle"], overrides: Overrides = {}): EventConsumer {
  const consumer = new EventConsumer({
    js: broker.js,
    jsm: broker.jsm,
    stream: stream.name,
    durable: newDurable(),
    filterSubjects: [`${stream.subjectPrefix}.>`],
    log,
    handle,
    ...overrides,
  });
  consumers.push(consumer);
  return consumer;
}

const durableInfo = (stream: TestStream, durable: string) => broker.jsm.consumers.info(stream.name, durable);

/** Polls until `done` holds; fails with `what` if it never does. */
async function waitUntil(what: string, done: () => boolean | Promise<boolean>, limitMs = 30_000): Promise<void> {
  const giveUp = Date.now() + limitMs;
  while (!(await done())) {
    if (Date.now() > giveUp) throw new Error(`gave up waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Every delivered message acked: nothing waiting, nothing outstanding. */
async function waitUntilSettled(stream: TestStream, durable: string): Promise<void> {
  await waitUntil("the consumer has acked everything", async () => {
    const info = await durableInfo(stream, durable);
    return info.num_pending === 0 && info.num_ack_pending === 0;
  });
}

/** A handler that fails the first delivery of one event and accepts everything else; `seen` runs on every call. */
function failingOnceFor(eventId: string, seen: () => void = () => {}): EventConsumerOptions["handle"] {
  let failed = false;
  return async (envelope) => {
    seen();
    if (envelope.id === eventId && !failed) {
      failed = true;
      throw new Error("handler failed");
    }
  };
}

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

const occurrences = (ids: string[]) => {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
};

describe("EventConsumer", () => {
  it("creates a durable pull consumer with explicit acks from the start of the stream", async () => {
    const stream = await newStream();
    const durable = newDurable();
    const filterSubjects = [`${stream.subjectPrefix}.account.>`];
    await newConsumer(stream, async () => {}, { durable, filterSubjects, maxDeliver: 7, ackWaitMs: 12_000 }).start();

    const { config } = await durableInfo(stream, durable);
    expect(config).toMatchObject({
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: filterSubjects[0],
      max_deliver: 7,
      ack_wait: nanos(12_000),
    });
    expect(config.deliver_subject).toBeUndefined();

    // A replica started with other settings brings the shared consumer to them.
    await newConsumer(stream, async () => {}, { durable, filterSubjects, maxDeliver: 9, ackWaitMs: 15_000 }).start();
    expect((await durableInfo(stream, durable)).config).toMatchObject({ max_deliver: 9, ack_wait: nanos(15_000) });
  });

  it("handles and acks every event once, in stream order, one at a time by default", async () => {
    const stream = await newStream();
    const published = await publishEvents(stream, 50);
    const handled: { envelope: EventEnvelope; delivery: Delivery }[] = [];
    let active = 0;
    let mostActive = 0;
    const durable = newDurable();
    const consumer = newConsumer(
      stream,
      async (envelope, delivery) => {
        mostActive = Math.max(mostActive, ++active);
        await new Promise((resolve) => setImmediate(resolve));
        handled.push({ envelope, delivery });
        active--;
      },
      { durable },
    );
    await consumer.start();

    await waitUntil("every event is handled", () => consumer.processed === 50);
    await waitUntilSettled(stream, durable);

    expect(handled.map((h) => h.envelope.id)).toEqual(published.map((e) => e.id));
    expect(handled.map((h) => h.delivery.streamSequence)).toEqual(published.map((_, i) => i + 1));
    for (const { envelope, delivery } of handled) {
      expect(delivery).toEqual({ subject: `${stream.subjectPrefix}.account.account_opened`, redeliveryCount: 0, streamSequence: expect.any(Number) });
      expect(envelope.payload.case).toBe("accountOpened");
    }
    expect(mostActive).toBe(1);
    expect([consumer.processed, consumer.failed, consumer.poisoned, consumer.redelivered]).toEqual([50, 0, 0, 0]);
    expect((await durableInfo(stream, durable)).num_redelivered).toBe(0);
  });

  it("only receives the events of its filter subjects", async () => {
    const stream = await newStream();
    const other = { ...accountOpened(), source: "risk" };
    const wanted = await publishEvents(stream, 3);
    await publish(stream, [other]);
    const ids: string[] = [];
    const durable = newDurable();
    const consumer = newConsumer(stream, async (e) => void ids.push(e.id), { durable, filterSubjects: [`${stream.subjectPrefix}.account.>`] });
    await consumer.start();
    await waitUntilSettled(stream, durable);
    expect(ids).toEqual(wanted.map((e) => e.id));
  });

  it("hands over an event id sent in upper case in lower case, as the inbox and every Tally publisher write it", async () => {
    const stream = await newStream();
    const shouted = { ...accountOpened() };
    shouted.id = shouted.id.toUpperCase();
    await publish(stream, [shouted]);
    const ids: string[] = [];
    const durable = newDurable();
    const consumer = newConsumer(stream, async (e) => void ids.push(e.id), { durable });
    await consumer.start();
    await waitUntilSettled(stream, durable);
    expect(ids).toEqual([shouted.id.toLowerCase()]);
  });

  it("redelivers an event whose handler fails, with the delay for its delivery count, until it succeeds", async () => {
    const stream = await newStream();
    const published = await publishEvents(stream, 5);
    const flaky = published[1].id;
    const flakyDeliveries: number[] = [];
    const delaysAskedFor: number[] = [];
    const durable = newDurable();
    const consumer = newConsumer(
      stream,
      async (envelope, { redeliveryCount }) => {
        if (envelope.id !== flaky) return;
        flakyDeliveries.push(redeliveryCount);
        if (redeliveryCount < 2) throw new Error(`transient failure ${redeliveryCount + 1}`);
      },
      {
        durable,
        retryDelayMs: (attempt) => {
          delaysAskedFor.push(attempt);
          return 50;
        },
      },
    );
    await consumer.start();

    await waitUntil("every event is handled", () => consumer.processed === 5);
    await waitUntilSettled(stream, durable);

    expect(flakyDeliveries).toEqual([0, 1, 2]);
    expect(delaysAskedFor).toEqual([1, 2]);
    expect([consumer.processed, consumer.failed, consumer.redelivered, consumer.poisoned]).toEqual([5, 2, 2, 0]);
  });

  it("by default never gives up on an event whose handler keeps failing, as in a long outage", async () => {
    const stream = await newStream();
    const [stubborn] = await publishEvents(stream, 1);
    let deliveries = 0;
    const durable = newDurable();
    const consumer = newConsumer(
      stream,
      async (envelope) => {
        if (envelope.id === stubborn.id && ++deliveries <= 25) throw new Error("database unavailable");
      },
      { durable, retryDelayMs: () => 5 },
    );
    await consumer.start();
    await waitUntil("the event is handled after 25 failures", () => consumer.processed === 1);
    await waitUntilSettled(stream, durable);
    expect([deliveries, consumer.failed, consumer.exhausted]).toEqual([26, 25, 0]);
  });

  it("terminates an event whose handler still fails on its last allowed delivery", async () => {
    const stream = await newStream();
    const published = await publishEvents(stream, 4);
    const doomed = published[0].id;
    let doomedDeliveries = 0;
    const durable = newDurable();
    const consumer = newConsumer(
      stream,
      async (envelope) => {
        if (envelope.id !== doomed) return;
        doomedDeliveries++;
        throw new Error("permanent failure");
      },
      { durable, maxDeliver: 3, retryDelayMs: () => 20 },
    );
    await consumer.start();

    await waitUntil("the doomed event is given up", () => consumer.exhausted === 1 && consumer.processed === 3);
    await waitUntilSettled(stream, durable);
    expect(doomedDeliveries).toBe(3);
    expect([consumer.failed, consumer.redelivered]).toEqual([3, 2]);
  });

  it("terminates and counts a poison message without holding up the events behind it", async () => {
    const stream = await newStream();
    const before = await publishEvents(stream, 2);
    // Random bytes, and a well-formed protobuf that is no envelope (it has no id).
    await broker.js.publish(`${stream.subjectPrefix}.account.account_opened`, randomBytes(64), { msgID: newId() });
    await broker.js.publish(`${stream.subjectPrefix}.account.account_opened`, new Uint8Array(0), { msgID: newId() });
    const after = await publishEvents(stream, 3);
    const ids: string[] = [];
    const durable = newDurable();
    const consumer = newConsumer(stream, async (e) => void ids.push(e.id), { durable });
    await consumer.start();

    await waitUntil("the events behind the poison messages are handled", () => consumer.processed === 5);
    await waitUntilSettled(stream, durable);
    expect(ids).toEqual([...before, ...after].map((e) => e.id));
    expect([consumer.poisoned, consumer.failed, consumer.redelivered]).toEqual([2, 0, 0]);
    expect((await durableInfo(stream, durable)).num_redelivered).toBe(0);
  });

  it("handles at most `concurrency` events at a time", async () => {
    const stream = await newStream();
    await publishEvents(stream, 20);
    let active = 0;
    let mostActive = 0;
    const release = gate();
    const durable = newDurable();
    const consumer = newConsumer(
      stream,
      async () => {
        mostActive = Math.max(mostActive, ++active);
        await release.opened;
        active--;
      },
      { durable, concurrency: 4 },
    );
    await consumer.start();

    await waitUntil("four handlers run at once", () => active === 4);
    // Let the consumer take anything more it (wrongly) would.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(active).toBe(4);
    release.open();
    await waitUntil("every event is handled", () => consumer.processed === 20);
    expect(mostActive).toBe(4);
    await waitUntilSettled(stream, durable);
  });

  it("shares one durable between replicas: each event is handled once in total", async () => {
    const stream = await newStream();
    const durable = newDurable();
    const handledBy: string[][] = [[], [], []];
    const replicas = handledBy.map((ids) =>
      newConsumer(
        stream,
        async (e) => {
          ids.push(e.id);
          await new Promise((resolve) => setTimeout(resolve, 2));
        },
        { durable, concurrency: 2 },
      ),
    );
    // Replicas starting together race to create the consumer.
    await Promise.all(replicas.map((r) => r.start()));
    const names: string[] = [];
    for await (const info of broker.jsm.consumers.list(stream.name)) names.push(info.name);
    expect(names).toEqual([durable]);

    const published = await publishEvents(stream, 200);
    await waitUntil("every event is handled", () => replicas.reduce((n, r) => n + r.processed, 0) === 200);
    await waitUntilSettled(stream, durable);

    const counts = occurrences(handledBy.flat());
    expect(counts.size).toBe(200);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect(new Set(counts.keys())).toEqual(new Set(published.map((e) => e.id)));
    expect(replicas.reduce((n, r) => n + r.processed, 0)).toBe(200);
    for (const ids of handledBy) expect(ids.length).toBeGreaterThan(0);
  });

  it("applies each event exactly once with the inbox, even when the handler fails after its commit", async () => {
    const stream = await newStream();
    const published = await publishEvents(stream, 30);
    const crashAfterCommit = new Set([published[3].id, published[17].id]);
    const durable = newDurable();
    const outcomes = new Map<string, boolean[]>();
    const handle = async (envelope: EventEnvelope) => {
      const outcome = await applyOnce(store.db, inbox, durable, envelope.id, async (tx) => {
        await tx.insert(effects).values({ eventId: envelope.id });
      });
      outcomes.set(envelope.id, [...(outcomes.get(envelope.id) ?? []), outcome.applied]);
      // The transaction has committed; dying before the ack means the event comes again.
      if (crashAfterCommit.delete(envelope.id)) throw new Error("crashed between commit and ack");
    };
    const replicas = [0, 1].map(() => newConsumer(stream, handle, { durable, retryDelayMs: () => 20 }));
    await Promise.all(replicas.map((r) => r.start()));

    await waitUntil("every event is handled", () => replicas.reduce((n, r) => n + r.processed, 0) === 30);
    await waitUntilSettled(stream, durable);

    expect(replicas.reduce((n, r) => n + r.failed, 0)).toBe(2);
    expect(replicas.reduce((n, r) => n + r.redelivered, 0)).toBe(2);
    expect(outcomes.get(published[3].id)).toEqual([true, false]);
    expect(outcomes.get(published[17].id)).toEqual([true, false]);
    const [applied] = await store.db.select({ n: count() }).from(inbox).where(eq(inbox.consumer, durable));
    expect(applied.n).toBe(30);
    const rows = await store.db.select({ eventId: effects.eventId }).from(effects);
    const perEvent = occurrences(rows.map((r) => r.eventId));
    for (const e of published) expect(perEvent.get(e.id)).toBe(1);
  });

  it("stop() waits for the handler in flight, which still acks", async () => {
    const stream = await newStream();
    await publishEvents(stream, 1);
    const release = gate();
    let started = false;
    let finished = false;
    const durable = newDurable();
    const consumer = newConsumer(
      stream,
      async () => {
        started = true;
        await release.opened;
        finished = true;
      },
      { durable },
    );
    await consumer.start();
    await waitUntil("the handler is running", () => started);

    let stopped = false;
    const stopping = consumer.stop().then(() => {
      stopped = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(stopped).toBe(false);

    release.open();
    await stopping;
    expect(finished).toBe(true);
    expect(consumer.processed).toBe(1);
    await consumer.stop(); // again: nothing more to do
    await waitUntilSettled(stream, durable);
    expect((await durableInfo(stream, durable)).num_redelivered).toBe(0);

    // The next replica on the durable carries on with what arrives later.
    const later = await publishEvents(stream, 2);
    const ids: string[] = [];
    const next = newConsumer(stream, async (e) => void ids.push(e.id), { durable });
    await next.start();
    await waitUntil("the later events are handled", () => next.processed === 2, 60_000);
    expect(ids).toEqual(later.map((e) => e.id));
  });

  it("recreates its durable consumer when it is deleted under it", async () => {
    const stream = await newStream();
    const durable = newDurable();
    const ids: string[] = [];
    const consumer = newConsumer(stream, async (e) => void ids.push(e.id), { durable });
    await consumer.start();
    const first = await publishEvents(stream, 2);
    await waitUntil("the first events are handled", () => consumer.processed === 2);

    await broker.jsm.consumers.delete(stream.name, durable);
    await waitUntil("the consumer is recreated", async () => (await durableInfo(stream, durable).catch(() => undefined)) !== undefined, 60_000);
    const second = await publishEvents(stream, 2);

    // The recreated durable starts from the beginning again: the inbox is what skips the first ones.
    await waitUntil("the later events are handled", () => second.every((e) => ids.includes(e.id)), 60_000);
    expect(ids.slice(0, 2)).toEqual(first.map((e) => e.id));
  });

  it("stops without having started, and is safe to stop twice", async () => {
    const stream = await newStream();
    const consumer = newConsumer(stream, async () => {});
    await consumer.stop();
    await consumer.stop();
  });

  it("backs off exponentially from 200 ms to at most 30 s by default", () => {
    expect([1, 2, 3, 4, 8, 9, 20].map(defaultRetryDelayMs)).toEqual([200, 400, 800, 1600, 25_600, 30_000, 30_000]);
  });
});

describe("EventConsumer metrics", () => {
  const recorded = recordMetrics();

  it("counts messages by outcome, redeliveries and poison messages, and reads its lag from JetStream", async () => {
    const stream = await newStream();
    const [, flaky] = await publishEvents(stream, 2);
    await broker.js.publish(`${stream.subjectPrefix}.account.garbage`, new Uint8Array([0xff, 0x00]));
    const durable = newDurable();
    const consumer = newConsumer(stream, failingOnceFor(flaky.id), { durable, retryDelayMs: () => 20 });
    await consumer.start();
    await waitUntil("both events are handled", () => consumer.processed === 2);
    await waitUntilSettled(stream, durable);

    const group = { "messaging.consumer.group.name": durable };
    expect(await recorded.value("messaging.consumer.messages", { ...group, outcome: "processed" })).toBe(2);
    expect(await recorded.value("messaging.consumer.messages", { ...group, outcome: "failed" })).toBe(1);
    expect(await recorded.value("messaging.consumer.messages", { ...group, outcome: "poisoned" })).toBe(1);
    expect(await recorded.value("messaging.consumer.redeliveries", group)).toBe(1);
    expect(await recorded.value("messaging.consumer.poison_messages", group)).toBe(1);
    expect(await recorded.value("messaging.process.duration", group)).toBe(3);
    expect(await recorded.value("messaging.consumer.lag", group)).toBe(0);
    expect(await recorded.value("messaging.consumer.unacknowledged", group)).toBe(0);

  });

  it("reports as lag what waits undelivered", async () => {
    const stream = await newStream();
    const durable = newDurable();
    const consumer = newConsumer(stream, async () => {}, { durable });
    await consumer.start();
    await consumer.stop();
    // Started again later, it has these to catch up on: before it does, they are its lag.
    await publishEvents(stream, 3);
    const held = gate();
    let handling = false;
    const again = newConsumer(
      stream,
      () => {
        handling = true;
        return held.opened;
      },
      { durable, concurrency: 1 },
    );
    await again.start();
    try {
      // Once one is delivered and held, at least one is unacknowledged (a scrape before it would see all three as lag).
      await waitUntil("one message is being handled", async () => handling);
      await waitUntil("the lag is seen", async () => (await recorded.value("messaging.consumer.lag", { "messaging.consumer.group.name": durable })) !== undefined);
      // Both from one scrape: read apart, the consumer may take the messages in between and count them twice.
      const [lag, unacked] = (await recorded.values(["messaging.consumer.lag", "messaging.consumer.unacknowledged"], { "messaging.consumer.group.name": durable })) as number[];
      expect(lag + unacked).toBe(3);
      expect(unacked).toBeGreaterThanOrEqual(1);
    } finally {
      // Even when a check fails, so the consumer's handler ends and the suite can stop it.
      held.open();
    }
  });
});

describe("EventConsumer tracing", () => {
  const exporter = recordSpans();

  it("handles each event in a consumer span that continues the producer's trace", async () => {
    const stream = await newStream();
    const [ok, failing] = [accountOpened(), accountOpened()];
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const producerSpanId = "00f067aa0ba902b7";
    for (const e of [ok, failing]) {
      const h = natsHeaders();
      h.set("traceparent", `00-${traceId}-${producerSpanId}-01`);
      await broker.js.publish(subjectOf(stream, e), toBinary(EventEnvelopeSchema, e), { msgID: e.id, headers: h });
    }
    const seenTraceIds: string[] = [];
    const durable = newDurable();
    const consumer = newConsumer(
      stream,
      failingOnceFor(failing.id, () => seenTraceIds.push(trace.getActiveSpan()?.spanContext().traceId ?? "none")),
      { durable, retryDelayMs: () => 20 },
    );
    await consumer.start();
    await waitUntil("both events are handled", () => consumer.processed === 2);
    await waitUntilSettled(stream, durable);

    expect(seenTraceIds).toEqual([traceId, traceId, traceId]);
    const spans = exporter.getFinishedSpans().filter((s) => s.attributes["messaging.message.id"] !== undefined);
    expect(spans).toHaveLength(3);
    const subject = `${stream.subjectPrefix}.account.account_opened`;
    for (const span of spans) {
      expect(span.name).toBe(`${subject} process`);
      expect(span.kind).toBe(SpanKind.CONSUMER);
      expect(span.spanContext().traceId).toBe(traceId);
      expect(span.parentSpanContext?.spanId).toBe(producerSpanId);
      expect(span.attributes).toMatchObject({ "messaging.system": "nats", "messaging.destination.name": subject });
    }
    const failedSpans = spans.filter((s) => s.status.code === SpanStatusCode.ERROR);
    expect(failedSpans.map((s) => s.attributes["messaging.message.id"])).toEqual([failing.id]);
    expect(failedSpans[0].attributes["messaging.nats.redelivery_count"]).toBe(0);
    const retried = spans.find((s) => s.attributes["messaging.message.id"] === failing.id && s.status.code !== SpanStatusCode.ERROR);
    expect(retried?.attributes["messaging.nats.redelivery_count"]).toBe(1);
  });
});
