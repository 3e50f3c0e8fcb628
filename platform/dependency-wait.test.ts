import { waitForDatabase } from "./db/wait";
import { connectBroker } from "./nats/connect";
import { createTestDatabase, freePort, TEST_NATS_URL, type TestDatabase } from "../test/support/infra";
import { lateListener, type LateListener } from "../test/support/late-listener";
import { recordingLogger } from "../test/support/logs";

// Services start before their database and broker answer, as they do under compose or after a reboot.
let database: TestDatabase;
const listeners: LateListener[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await Promise.all(listeners.map((l) => l.close()));
  await database.drop();
});

async function late(url: string, afterMs: number): Promise<{ url: string; listener: LateListener }> {
  const target = new URL(url);
  const listener = await lateListener({ host: target.hostname, port: Number(target.port) }, afterMs);
  listeners.push(listener);
  target.port = String(listener.port);
  return { url: target.toString(), listener };
}

describe("waiting for PostgreSQL", () => {
  it("waits for a database that starts listening later, saying so", async () => {
    const { log, lines } = recordingLogger();
    const { url } = await late(database.url, 1500);
    await waitForDatabase(url, log, 20_000);
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining([expect.stringMatching(/^waiting for PostgreSQL at postgres:/), expect.stringMatching(/answers$/)]));
  });

  it("gives up after its bound, naming the database without its password", async () => {
    const { log } = recordingLogger();
    const url = `postgres://postgres:s3cret@127.0.0.1:${await freePort()}/tally`;
    const err = await waitForDatabase(url, log, 600).then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/^PostgreSQL at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/tally did not answer within 600 ms/);
    expect(err?.message).not.toContain("s3cret");
  });

  it("does not wait for what waiting cannot fix: a database that does not exist", async () => {
    const { log, lines } = recordingLogger();
    const url = new URL(database.url);
    url.pathname = "/tally_no_such_database";
    await expect(waitForDatabase(url.toString(), log, 60_000)).rejects.toThrow(/refused the connection: .*does not exist/);
    expect(lines).toHaveLength(0);
  });
});

describe("waiting for NATS", () => {
  it("connects to a server that starts listening later", async () => {
    const { log, lines } = recordingLogger();
    const { url } = await late(TEST_NATS_URL, 1500);
    const broker = await connectBroker(url, "dependency-wait-test", log, 20_000);
    try {
      expect((await broker.jsm.getAccountInfo()).limits).toBeDefined();
      expect(lines.map((l) => l.msg)).toContain(`waiting for NATS at ${url}`);
    } finally {
      await broker.close();
    }
  });

  it("gives up after its bound", async () => {
    const { log } = recordingLogger();
    const url = `nats://127.0.0.1:${await freePort()}`;
    await expect(connectBroker(url, "dependency-wait-test", log, 600)).rejects.toThrow(`NATS at ${url} did not answer within 600 ms`);
  });
});
