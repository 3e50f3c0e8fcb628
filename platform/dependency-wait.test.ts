import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { withoutPassword } from "./dependency-wait";
import { waitForDatabase } from "./db/wait";
import { connectBroker, serversAndCredentials } from "./nats/connect";
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

async function late(url: string, afterMs: number, before: "refuse" | "close" = "refuse"): Promise<{ url: string; listener: LateListener }> {
  const target = new URL(url);
  const listener = await lateListener({ host: target.hostname, port: Number(target.port) }, afterMs, before);
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

  it("waits behind a proxy that accepts and closes connections until the database is up, and not beyond its bound", async () => {
    const { log } = recordingLogger();
    await waitForDatabase((await late(database.url, 1500, "close")).url, log, 20_000);
    const never = await late(database.url, 120_000, "close");
    await expect(waitForDatabase(never.url, log, 1500)).rejects.toThrow(/did not answer within 1500 ms/);
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

describe("NATS credentials it is refused", () => {
  let server: ChildProcess;
  let port: number;
  let store: string;
  beforeAll(async () => {
    // A private nats-server that wants a user and password.
    const bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"].find(existsSync)!;
    port = await freePort();
    store = mkdtempSync(path.join(tmpdir(), "tally-nats-auth-"));
    server = spawn(bin, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", store, "--user", "tally", "--pass", "right"], { stdio: "ignore" });
    const { log } = recordingLogger();
    await connectBroker(`nats://tally:right@127.0.0.1:${port}`, "dependency-wait-test", log, 10_000).then((b) => b.close());
  });
  afterAll(() => {
    server?.kill();
    rmSync(store, { recursive: true, force: true });
  });

  it("are reported at once, without the password, not waited on", async () => {
    const { log, lines } = recordingLogger();
    const started = Date.now();
    const err = await connectBroker(`nats://tally:wrong@127.0.0.1:${port}`, "dependency-wait-test", log, 30_000).then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(new RegExp(`^NATS at nats://tally:\\*\\*\\*@127\\.0\\.0\\.1:${port} refused the connection`));
    expect(err?.message).not.toContain("wrong");
    expect(lines).toHaveLength(0);
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});

describe("NATS credentials in NATS_URL", () => {
  it.each([
    [["nats://tally:s%40cret@a:4222", "nats://tally:s%40cret@b:4222"], { servers: ["nats://a:4222", "nats://b:4222"], user: "tally", pass: "s@cret" }],
    [["nats://tok3n@a:4222"], { servers: ["nats://a:4222"], token: "tok3n" }],
    [["a:4222", "b:4222"], { servers: ["a:4222", "b:4222"] }],
  ])("%j become the client's options", (servers, options) => {
    expect(serversAndCredentials(servers)).toEqual(options);
  });
});

describe("addresses in messages", () => {
  it.each([
    ["postgres://tally:s3cret@db:5432/tally", "postgres://tally:***@db:5432/tally"],
    ["nats://s3cret-token@nats:4222", "nats://***@nats:4222"],
    ["nats://nats:4222", "nats://nats:4222"],
    ["s3cret-token@nats:4222", "***@nats:4222"],
    ["nats:4222", "nats:4222"],
  ])("shows %s as %s", (address, shown) => {
    expect(withoutPassword(address)).toBe(shown);
  });
});
