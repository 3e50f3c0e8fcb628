import path from "node:path";
import { create, fromBinary } from "@bufbuild/protobuf";
import { AccountOpenedSchema, EventEnvelopeSchema, type EventEnvelope } from "../../gen/tally/events/v1/events_pb";
import { schema } from "../../services/account/src/db/schema";
import { createTestDatabase, provisionedTestStream, testLogger, TEST_NATS_URL, type TestDatabase, type TestStream } from "../../test/support/infra";
import { connectDatabase, type Database } from "../db/connect";
import { migrateSchema } from "../db/migrate";
import { newId } from "../ids";
import { connectBroker, type Broker } from "../nats/connect";
import { projectRoot } from "../project-root";
import { appendEvents, type NewEvent, type OutboxWriter } from "./append";
import { OutboxRelay } from "./relay";
import type { JetStreamClient } from "@nats-io/jetstream";
import { TimeoutError } from "@nats-io/transport-node";

/**
 * The transactional outbox end to end: events appended through drizzle in
 * PostgreSQL, published by relays to a private JetStream stream.
 */

const log = testLogger();
let database: TestDatabase;
let store: Database<typeof schema>;
let broker: Broker;
const streams: TestStream[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  await migrateSchema({
    url: database.url,
    schema: "account",
    migrationsFolder: path.join(projectRoot(), "services/account/migrations"),
    log,
  });
  store = connectDatabase({ url: database.url, poolSize: 10, log, applicationName: "outbox-relay-test" }, schema);
  broker = await connectBroker(TEST_NATS_URL, "outbox-relay-test", log);
});

afterAll(async () => {
  await Promise.all(made.map((r) => r.stop()));
  await Promise.all(streams.map((s) => s.delete()));
  await broker?.close();
  await store?.close();
  await database?.drop();
});

/** A private stream, provisioned as the services do, deleted after the suite. */
const newStream = () => provisionedTestStream(broker.jsm, streams, 10 * 60_000);

const writerFor = (stream: TestStream): OutboxWriter => ({ table: schema.outbox, source: "account", subjectPrefix: stream.subjectPrefix });

function accountOpened(): NewEvent {
  const id = newId();
  return {
    subjectId: id,
    payload: { case: "accountOpened", value: create(AccountOpenedSchema, { account: { id, customerId: "cust-1", currency: "EUR" } }) },
  };
}

/** Appends `count` events in one transaction and returns their envelopes. */
function appendInOneTransaction(stream: TestStream, count: number): Promise<EventEnvelope[]> {
  return store.db.transaction((tx) => appendEvents(tx, writerFor(stream), Array.from({ length: count }, accountOpened)));
}

/** Every relay a test makes, stopped (its connection closed) after the suite. */
const made: OutboxRelay[] = [];

function newRelay(batchSize = 16, options: { pollMs?: number; name?: string; js?: JetStreamClient } = {}): OutboxRelay {
  const relay = new OutboxRelay({
    db: store.db,
    url: database.url,
    applicationName: options.name ?? "outbox-relay-test",
    table: schema.outbox,
    js: options.js ?? broker.js,
    log,
    batchSize,
    pollMs: options.pollMs ?? 10,
    retentionHours: 24,
  });
  made.push(relay);
  return relay;
}

async function unpublishedCount(): Promise<number> {
  const [row] = await store.sql`select count(*)::int as n from account.outbox where published_at is null and parked_at is null`;
  return row.n;
}

/** Polls until `done` holds; fails with `what` if it never does. */
async function waitUntil(what: string, done: () => Promise<boolean>, limitMs = 30_000): Promise<void> {
  const giveUp = Date.now() + limitMs;
  while (!(await done())) {
    if (Date.now() > giveUp) throw new Error(`gave up waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Publishes all there is, then stops the relay, letting the lead go. */
async function drainAll(relay: OutboxRelay): Promise<void> {
  while ((await relay.drainOnce()) > 0);
  await relay.stop();
}

interface StreamedEvent {
  seq: number;
  subject: string;
  msgId: string | undefined;
  envelope: EventEnvelope;
}

/** Every message of a stream, in stream order, read through an ordered consumer. */
async function readStream(stream: TestStream): Promise<StreamedEvent[]> {
  const { state } = await broker.jsm.streams.info(stream.name);
  const consumer = await broker.js.consumers.get(stream.name);
  const events: StreamedEvent[] = [];
  while (events.length < state.messages) {
    const batch = await consumer.fetch({ max_messages: state.messages - events.length, expires: 2000 });
    let received = 0;
    for await (const m of batch) {
      received++;
      events.push({ seq: m.seq, subject: m.subject, msgId: m.headers?.get("Nats-Msg-Id"), envelope: fromBinary(EventEnvelopeSchema, m.data) });
    }
    if (received === 0) break;
  }
  return events;
}

const streamMessageCount = async (stream: TestStream) => (await broker.jsm.streams.info(stream.name)).state.messages;

const occurrences = (ids: string[]) => {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
};

describe("appendEvents", () => {
  it("writes nothing when the caller's transaction rolls back", async () => {
    const stream = await newStream();
    const before = await unpublishedCount();
    await expect(
      store.db.transaction(async (tx) => {
        await appendEvents(tx, writerFor(stream), [accountOpened(), accountOpened()]);
        throw new Error("the state change failed");
      }),
    ).rejects.toThrow("the state change failed");
    expect(await unpublishedCount()).toBe(before);
  });

  it("stores a full envelope under the subject of its type", async () => {
    const stream = await newStream();
    const event = accountOpened();
    const [envelope] = await store.db.transaction((tx) => appendEvents(tx, writerFor(stream), [event]));
    expect(envelope).toMatchObject({ type: "account_opened", source: "account", subjectId: event.subjectId });
    const [row] = await store.sql`select subject, payload from account.outbox where id = ${envelope.id}`;
    expect(row.subject).toBe(`${stream.subjectPrefix}.account.account_opened`);
    const stored = fromBinary(EventEnvelopeSchema, row.payload);
    expect(stored.id).toBe(envelope.id);
    expect(stored.payload.case).toBe("accountOpened");
    await drainAll(newRelay());
  });
});

describe("OutboxRelay", () => {
  const TOTAL = 300;
  let stream: TestStream;
  let appended: EventEnvelope[];
  let relays: OutboxRelay[];

  beforeAll(async () => {
    stream = await newStream();
    appended = (await Promise.all([100, 100, 60, 40].map((n) => appendInOneTransaction(stream, n)))).flat();
    // Small batches, so the two relays would interleave if both could publish at once.
    relays = [newRelay(8), newRelay(8)];
  });
  afterAll(async () => {
    await Promise.all(relays.map((r) => r.stop()));
  });

  it("publishes every event exactly once with two relays running at the same time", async () => {
    expect(appended).toHaveLength(TOTAL);
    expect(await unpublishedCount()).toBe(TOTAL);
    for (const relay of relays) relay.start();
    await waitUntil("every outbox row is marked published", async () => (await unpublishedCount()) === 0);
    await Promise.all(relays.map((r) => r.stop()));

    // A row claimed by both relays would be counted twice here.
    expect(relays[0].published + relays[1].published).toBe(TOTAL);
    expect(relays[0].duplicates + relays[1].duplicates).toBe(0);
    expect(await streamMessageCount(stream)).toBe(TOTAL);

    const events = await readStream(stream);
    expect(events).toHaveLength(TOTAL);
    const counts = occurrences(events.map((e) => e.envelope.id));
    expect(counts.size).toBe(TOTAL);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect(new Set(counts.keys())).toEqual(new Set(appended.map((e) => e.id)));
    // One publisher at a time: the stream holds the events in the order they were committed.
    const written = await store.sql`select id from account.outbox where subject like ${stream.subjectPrefix + ".%"} order by seq`;
    expect(events.map((e) => e.envelope.id)).toEqual(written.map((r) => r.id));
    for (const e of events) {
      expect(e.msgId).toBe(e.envelope.id);
      expect(e.subject).toBe(`${stream.subjectPrefix}.account.account_opened`);
      expect(e.envelope.payload.case).toBe("accountOpened");
    }
  });

  it("republishes rows left unmarked by a crash, and the stream drops the copies", async () => {
    const crashed = await store.sql`
      update account.outbox set published_at = null
      where seq in (select seq from account.outbox where subject like ${stream.subjectPrefix + ".%"} order by seq limit 10)
      returning id`;
    expect(crashed).toHaveLength(10);
    const relay = relays[0];
    const [publishedBefore, duplicatesBefore] = [relay.published, relay.duplicates];

    await drainAll(relay);

    expect(await unpublishedCount()).toBe(0);
    expect(relay.published - publishedBefore).toBe(10);
    expect(relay.duplicates - duplicatesBefore).toBe(10);
    expect(await streamMessageCount(stream)).toBe(TOTAL);
    const counts = occurrences((await readStream(stream)).map((e) => e.envelope.id));
    for (const { id } of crashed) expect(counts.get(id)).toBe(1);
  });
});

describe("OutboxRelay with a single replica", () => {
  it("publishes events in the order they were written", async () => {
    const stream = await newStream();
    const appended = await appendInOneTransaction(stream, 50);
    const relay = newRelay(16);
    await drainAll(relay);
    const events = await readStream(stream);
    expect(events.map((e) => e.envelope.id)).toEqual(appended.map((e) => e.id));
  });

  it("marks the rows it published with its next pass's read, one statement, and its last ones when it stops", async () => {
    const stream = await newStream();
    const relay = newRelay(16);
    await appendInOneTransaction(stream, 2);
    expect(await relay.drainOnce()).toBe(2);
    // Published; the next pass marks them.
    expect(await unpublishedCount()).toBe(2);
    await appendInOneTransaction(stream, 1);
    // Marks the two and reads the one, and not the two again: its read sees the table from before its mark.
    expect(await relay.drainOnce()).toBe(1);
    expect(await unpublishedCount()).toBe(1);
    await relay.stop();
    expect(await unpublishedCount()).toBe(0);
    expect([relay.published, relay.duplicates, await streamMessageCount(stream)]).toEqual([3, 0, 3]);
  });

  it("counts in its backlog the rows not yet published, not those published and not yet marked", async () => {
    const stream = await newStream();
    const relay = newRelay(16);
    await appendInOneTransaction(stream, 3);
    expect(await relay.backlogNow()).toMatchObject({ waiting: 3, oldestSeconds: expect.any(Number) });
    expect(await relay.drainOnce()).toBe(3);
    expect(await unpublishedCount()).toBe(3);
    expect(await relay.backlogNow()).toEqual({ waiting: 0, oldestSeconds: 0, parked: 0 });
    await appendInOneTransaction(stream, 1);
    expect((await relay.backlogNow()).waiting).toBe(1);
    expect(await relay.drainOnce()).toBe(1);
    expect(await relay.backlogNow()).toEqual({ waiting: 0, oldestSeconds: 0, parked: 0 });
    await relay.stop();
    expect(await unpublishedCount()).toBe(0);
  });

  it("stops at once when stopped in the middle of publishing, however long its poll interval", async () => {
    const stream = await newStream();
    const relay = newRelay(16, { pollMs: 10 * 60_000 });
    relay.start();
    await waitUntil("the relay sleeps until its next poll", async () => relay["wake"] !== undefined);
    await appendInOneTransaction(stream, 3);
    let stopping: Promise<string> | undefined;
    // Hold the outbox table so the nudged relay is caught mid-pass, and stop it there.
    await store.sql.begin(async (tx) => {
      await tx`lock table account.outbox in access exclusive mode`;
      relay.nudge();
      await waitUntil("the relay waits for the table", async () => {
        const [row] = await store.sql`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`;
        return row.n > 0;
      });
      stopping = relay.stop().then(() => "stopped");
    });
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([stopping!, new Promise((resolve) => (timer = setTimeout(() => resolve("still running"), 10_000)))]);
    clearTimeout(timer);
    expect(outcome).toBe("stopped");
    expect(await streamMessageCount(stream)).toBe(3);
    expect(await unpublishedCount()).toBe(0);
  });

  it("publishes soon after a nudge and stops cleanly", async () => {
    const stream = await newStream();
    const relay = newRelay(16, { pollMs: 10 * 60_000 });
    expect(await unpublishedCount()).toBe(0);
    relay.start();
    try {
      // The first pass finds nothing; the relay then sleeps for its (long) poll interval.
      await waitUntil("the relay sleeps until its next poll", async () => relay["wake"] !== undefined);
      await appendInOneTransaction(stream, 5);
      relay.nudge();
      await waitUntil("the nudged relay has published", async () => (await streamMessageCount(stream)) === 5);
    } finally {
      await relay.stop();
    }
    expect(await unpublishedCount()).toBe(0);
  });
});

/** Ends the connection of relay `a` (leaderAndStandby's leader) from the server's side, and with it the lead. */
async function loseLeaderConnection(a: OutboxRelay): Promise<void> {
  await store.sql`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'outbox-relay-a' and datname = current_database()`;
  await waitUntil("the leader learns its connection is gone", async () => !a.leading);
}

/** Two relays on a new stream, the first of which has led a pass (publishing one event); `b` stands by. */
async function leaderAndStandby(): Promise<{ stream: TestStream; a: OutboxRelay; b: OutboxRelay }> {
  const stream = await newStream();
  const [a, b] = [newRelay(16, { name: "outbox-relay-a" }), newRelay(16, { name: "outbox-relay-b" })];
  await appendInOneTransaction(stream, 1);
  expect(await a.drainOnce()).toBe(1);
  return { stream, a, b };
}

describe("OutboxRelay and an event the stream will not take", () => {
  /** A row written as appendEvents would, but which the stream refuses: a subject outside it, or too large a payload. */
  async function appendPoison(what: { subject?: string; payloadBytes?: number }): Promise<{ seq: bigint; id: string }> {
    const id = newId();
    const payload = new Uint8Array(what.payloadBytes ?? 8);
    const [row] = await store.db.insert(schema.outbox).values({ id, subject: what.subject ?? "nowhere.account.opened", payload }).returning();
    return { seq: row.seq, id };
  }

  const rowOf = async (seq: bigint) => (await store.sql`select published_at, parked_at, park_reason from account.outbox where seq = ${String(seq)}`)[0];

  afterEach(async () => {
    // A test that failed midway must not leave its relay leading, nor its rows waiting, for the next.
    await Promise.all(made.map((r) => r.stop()));
    await store.sql`delete from account.outbox where parked_at is not null or subject like 'nowhere.%'`;
  });

  it("parks a row the stream refuses while it takes the rows after it, after three passes, and the events behind it go on in order", async () => {
    const stream = await newStream();
    const relay = newRelay(16);
    const [first] = await appendInOneTransaction(stream, 1);
    const poison = await appendPoison({});
    const after = [...(await appendInOneTransaction(stream, 1)), ...(await appendInOneTransaction(stream, 1))];
    // The events after it are not held back; the refused row waits for the next pass.
    expect(await relay.drainOnce()).toBe(3);
    expect((await rowOf(poison.seq)).parked_at).toBeNull();
    after.push(...(await appendInOneTransaction(stream, 1)));
    expect(await relay.drainOnce()).toBe(1);
    expect((await rowOf(poison.seq)).parked_at).toBeNull();
    after.push(...(await appendInOneTransaction(stream, 1)));
    // The third pass that refuses it while taking what follows parks it, with why.
    expect(await relay.drainOnce()).toBe(1);
    const parked = await rowOf(poison.seq);
    expect(parked).toMatchObject({ published_at: null, parked_at: expect.anything(), park_reason: expect.stringContaining("jetstream") });
    expect(await relay.backlogNow()).toEqual({ waiting: 0, oldestSeconds: 0, parked: 1 });
    // Parked rows are not read again: a pass with nothing new sends nothing, and fails nothing.
    expect(await relay.drainOnce()).toBe(0);
    const streamed = await readStream(stream);
    expect(streamed.map((e) => e.msgId)).toEqual([first, ...after].map((e) => e.id));
    expect(streamed.map((e) => e.msgId)).not.toContain(poison.id);
    await relay.stop();
  });

  it("does not park a row refused alone: the stream may be what is at fault, so it backs off and sends it again", async () => {
    await newStream();
    const relay = newRelay(16);
    const poison = await appendPoison({});
    for (let pass = 0; pass < 5; pass++) await expect(relay.drainOnce()).rejects.toThrow(/jetstream/i);
    expect((await rowOf(poison.seq)).parked_at).toBeNull();
    expect((await relay.backlogNow()).waiting).toBe(1);
    await relay.stop();
  });

  it("holds no timeout against a row: a pass that refuses it so starts its count again, for the stream or the connection may be at fault", async () => {
    const stream = await newStream();
    // The real client, except that the next publish to the poison row's subject, when told, times out.
    let timeOutNext = false;
    const js = new Proxy(broker.js, {
      get(target, property, receiver) {
        if (property !== "publish") return Reflect.get(target, property, receiver);
        return (subject: string, ...rest: Parameters<JetStreamClient["publish"]> extends [string, ...infer R] ? R : never) => {
          if (timeOutNext && subject.startsWith("nowhere.")) {
            timeOutNext = false;
            return Promise.reject(new TimeoutError());
          }
          return target.publish(subject, ...rest);
        };
      },
    });
    const relay = newRelay(16, { js });
    const poison = await appendPoison({});
    const passWithOneMore = async () => {
      await appendInOneTransaction(stream, 1);
      return relay.drainOnce();
    };
    // Two passes count against it; a timeout starts the count again; two more are not yet three.
    expect([await passWithOneMore(), await passWithOneMore()]).toEqual([1, 1]);
    timeOutNext = true;
    await expect(passWithOneMore()).rejects.toThrow(TimeoutError);
    expect([await passWithOneMore(), await passWithOneMore()]).toEqual([1, 1]);
    expect((await rowOf(poison.seq)).parked_at).toBeNull();
    // The third pass in a row that refuses it for itself parks it.
    expect(await passWithOneMore()).toBe(1);
    expect((await rowOf(poison.seq)).parked_at).not.toBeNull();
    expect(await streamMessageCount(stream)).toBe(6);
    await relay.stop();
  });

  it("parks a row whose payload exceeds the server's limit, whatever comes after it", async () => {
    const stream = await newStream();
    const relay = newRelay(16);
    const poison = await appendPoison({ subject: `${stream.subjectPrefix}.account.opened`, payloadBytes: broker.nc.info!.max_payload + 1 });
    for (let pass = 0; pass < 3; pass++) expect(await relay.drainOnce()).toBe(0);
    expect(await rowOf(poison.seq)).toMatchObject({ parked_at: expect.anything(), park_reason: expect.stringContaining("max_payload") });
    const [next] = await appendInOneTransaction(stream, 1);
    expect(await relay.drainOnce()).toBe(1);
    expect((await readStream(stream)).map((e) => e.msgId)).toEqual([next.id]);
    await relay.stop();
  });
});

describe("OutboxRelay leadership", () => {
  it("keeps the lead from pass to pass: another relay publishes nothing while the leader lives, and takes over once it stops", async () => {
    const { stream, a, b } = await leaderAndStandby();
    await appendInOneTransaction(stream, 2);
    // Between its passes the leader still leads: the other may not publish.
    expect(await b.drainOnce()).toBe(0);
    expect([a.leading, b.leading]).toEqual([true, false]);
    await a.stop();
    expect(await b.drainOnce()).toBe(2);
    expect(await streamMessageCount(stream)).toBe(3);
    await b.stop();
  });

  it("hands the lead over when the leader's connection is lost, and the old leader then stands by", async () => {
    const { stream, a, b } = await leaderAndStandby();
    await loseLeaderConnection(a);
    await appendInOneTransaction(stream, 2);
    // The old leader's last row was published but not yet marked (its next pass would have): sent again, dropped as a copy.
    expect(await b.drainOnce()).toBe(3);
    expect(b.duplicates).toBe(1);
    // On a new connection, without the lock: the other leads now.
    expect(await a.drainOnce()).toBe(0);
    expect(await streamMessageCount(stream)).toBe(3);
    await Promise.all([a.stop(), b.stop()]);
  });

  it("marks what it published before it lost the lead, so the next leader does not send it again", async () => {
    const { stream, a, b } = await leaderAndStandby();
    await loseLeaderConnection(a);
    await appendInOneTransaction(stream, 2);
    await b["tryToLead"]();
    // The lock went with the connection, yet the row it published is in the stream: marked sent on the pool.
    expect(await a.drainOnce()).toBe(0);
    expect(await b.drainOnce()).toBe(2);
    expect(b.duplicates).toBe(0);
    expect(await streamMessageCount(stream)).toBe(3);
    await Promise.all([a.stop(), b.stop()]);
  });

  it("marks what it published when it stops, though its connection (and the lead) is gone", async () => {
    const { stream, a, b } = await leaderAndStandby();
    await loseLeaderConnection(a);
    await a.stop();
    expect(await b.drainOnce()).toBe(0);
    expect(b.duplicates).toBe(0);
    expect(await streamMessageCount(stream)).toBe(1);
    await b.stop();
  });

  it("publishes at once the events another replica commits, told by it, however long the poll interval", async () => {
    const stream = await newStream();
    const [leader, other] = [newRelay(16, { pollMs: 10 * 60_000 }), newRelay(16, { pollMs: 10 * 60_000 })];
    leader.start();
    await waitUntil("the leader sleeps until its next poll", async () => leader.leading && leader["wake"] !== undefined);
    other.start();
    await waitUntil("the other relay sleeps until its next poll", async () => other["wake"] !== undefined);
    await appendInOneTransaction(stream, 4);
    // The commit was the other replica's: its relay does not lead, so it tells the leader.
    other.nudge();
    await waitUntil("the leader has published", async () => (await streamMessageCount(stream)) === 4, 10_000);
    expect([leader.published, other.published]).toEqual([4, 0]);
    await Promise.all([leader.stop(), other.stop()]);
  });
});

describe("OutboxRelay when the leader freezes", () => {
  it("takes the lead from a leader that stops answering (a paused process): its idle session ends, and the lock with it", async () => {
    // It leads, and then does nothing more, as a frozen process would.
    const { stream, a, b } = await leaderAndStandby();
    await appendInOneTransaction(stream, 1);
    expect(await b.drainOnce()).toBe(0);
    // It sends the new row, and the frozen leader's last one again (published, not yet marked): the stream drops the copy.
    await waitUntil("another relay takes the lead", async () => (await b.drainOnce()) === 2, 30_000);
    expect(b.duplicates).toBe(1);
    expect(await streamMessageCount(stream)).toBe(2);
    await Promise.all([a.stop(), b.stop()]);
  }, 40_000);

  it("does not publish rows read longer ago than half its session's idle timeout: it may have lost the lead meanwhile, so it reads again", async () => {
    const stream = await newStream();
    const relay = newRelay(16);
    expect(await relay.drainOnce()).toBe(0);
    expect(relay.leading).toBe(true);
    await appendInOneTransaction(stream, 2);
    // The relay's read waits behind the lock for six seconds, as if it froze there.
    let locked!: () => void;
    const lockTaken = new Promise<void>((resolve) => (locked = resolve));
    const holder = store.sql.begin(async (tx) => {
      await tx`lock table account.outbox in access exclusive mode`;
      locked();
      await new Promise((resolve) => setTimeout(resolve, 6_000));
    });
    await lockTaken;
    expect(await relay.drainOnce()).toBe(0);
    await holder;
    expect(await streamMessageCount(stream)).toBe(0);
    expect(await relay.drainOnce()).toBe(2);
    expect(await streamMessageCount(stream)).toBe(2);
    await relay.stop();
  }, 20_000);
});
