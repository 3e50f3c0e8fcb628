import { DiscardPolicy, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { testLogger, testStream, TEST_NATS_URL, type TestStream } from "../../test/support/infra";
import { connectBroker, type Broker } from "./connect";
import { ensureStream, type StreamOptions } from "./stream";

let broker: Broker;
let stream: TestStream;

const options = (overrides: Partial<StreamOptions> = {}): StreamOptions => ({
  name: stream.name,
  subjectPrefix: stream.subjectPrefix,
  duplicateWindowMs: 120_000,
  maxAgeDays: 2,
  replicas: 1,
  ...overrides,
});

beforeAll(async () => {
  broker = await connectBroker(TEST_NATS_URL, "platform-stream-test", testLogger());
  stream = testStream();
});
afterAll(async () => {
  await stream?.delete();
  await broker?.close();
});

describe("ensureStream", () => {
  it("creates a new stream once when five replicas provision it at the same time", async () => {
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => ensureStream(broker.jsm, options())));
    expect(results.map((r) => r.status)).toEqual(Array(5).fill("fulfilled"));

    const { config, state } = await broker.jsm.streams.info(stream.name);
    expect(config.subjects).toEqual([`${stream.subjectPrefix}.>`]);
    expect(config.storage).toBe(StorageType.File);
    expect(config.retention).toBe(RetentionPolicy.Limits);
    expect(config.discard).toBe(DiscardPolicy.Old);
    expect(config.duplicate_window).toBe(nanos(120_000));
    expect(config.max_age).toBe(nanos(2 * 24 * 3600 * 1000));
    expect(state.messages).toBe(0);

    const names: string[] = [];
    for await (const name of broker.jsm.streams.names(`${stream.subjectPrefix}.>`)) names.push(name);
    expect(names).toEqual([stream.name]);
  });

  it("creates a new stream when replicas race to provision it with different configurations", async () => {
    const other = testStream();
    try {
      const windows = [60_000, 90_000, 120_000, 150_000, 180_000];
      const results = await Promise.allSettled(
        windows.map((duplicateWindowMs) =>
          ensureStream(broker.jsm, { name: other.name, subjectPrefix: other.subjectPrefix, duplicateWindowMs, maxAgeDays: 1, replicas: 1 }),
        ),
      );
      expect(results.map((r) => r.status)).toEqual(Array(5).fill("fulfilled"));
      const { config } = await broker.jsm.streams.info(other.name);
      expect(config.subjects).toEqual([`${other.subjectPrefix}.>`]);
      expect(windows.map(nanos)).toContain(config.duplicate_window);
    } finally {
      await other.delete();
    }
  });

  it("captures the events published under its subject prefix", async () => {
    const ack = await broker.js.publish(`${stream.subjectPrefix}.account.account_opened`, "x");
    expect(ack.stream).toBe(stream.name);
  });

  it("brings an existing stream to a new configuration, keeping its messages", async () => {
    const before = (await broker.jsm.streams.info(stream.name)).state.messages;
    expect(before).toBeGreaterThan(0);
    await ensureStream(broker.jsm, options({ duplicateWindowMs: 300_000, maxAgeDays: 3 }));
    const { config, state } = await broker.jsm.streams.info(stream.name);
    expect(config.duplicate_window).toBe(nanos(300_000));
    expect(config.max_age).toBe(nanos(3 * 24 * 3600 * 1000));
    expect(state.messages).toBe(before);
  });

  it("updates concurrently without failing", async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => ensureStream(broker.jsm, options({ duplicateWindowMs: 60_000 }))),
    );
    expect(results.map((r) => r.status)).toEqual(Array(5).fill("fulfilled"));
    expect((await broker.jsm.streams.info(stream.name)).config.duplicate_window).toBe(nanos(60_000));
  });
});
