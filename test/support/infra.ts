import { readFileSync } from "node:fs";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import postgres from "postgres";
import { newId } from "../../platform/ids";
import { createLogger } from "../../platform/logger";
import { ensureStream } from "../../platform/nats/stream";

/** Test-only plumbing: a fresh database and a private stream per suite, on the real servers. */

/** The servers `npm test` made sure of (scripts/infra.js: DATABASE_URL's, NATS_URL's first), unless the TEST_ variables name others. */
function adminUrl(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  url.pathname = "/postgres";
  return url.toString();
}
export const TEST_DATABASE_ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL || adminUrl(process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres");
export const TEST_NATS_URL = process.env.TEST_NATS_URL || (process.env.NATS_URL || "nats://127.0.0.1:4222").split(",")[0];

export const testLogger = () => createLogger("test", process.env.TEST_LOG_LEVEL ?? "silent");

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `tally_test_${newId().replace(/-/g, "").slice(-16)}`;
  const admin = postgres(TEST_DATABASE_ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  const url = new URL(TEST_DATABASE_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const sql = postgres(TEST_DATABASE_ADMIN_URL, { max: 1, onnotice: () => {} });
      await sql.unsafe(`drop database if exists ${name} with (force)`);
      await sql.end();
    },
  };
}

export interface TestStream {
  name: string;
  subjectPrefix: string;
  delete(): Promise<void>;
}

export function testStream(): TestStream {
  const suffix = newId().replace(/-/g, "").slice(-12);
  const name = `TALLY_TEST_${suffix}`;
  return {
    name,
    subjectPrefix: `test_${suffix}`,
    async delete() {
      const nc = await connect({ servers: TEST_NATS_URL });
      try {
        const jsm = await jetstreamManager(nc);
        await jsm.streams.delete(name).catch(() => false);
      } finally {
        await nc.close();
      }
    },
  };
}

/** A private stream provisioned as the services do it; `created` collects it for deletion after the suite. */
export async function provisionedTestStream(jsm: JetStreamManager, created: TestStream[], duplicateWindowMs = 60_000): Promise<TestStream> {
  const stream = testStream();
  created.push(stream);
  await ensureStream(jsm, { name: stream.name, subjectPrefix: stream.subjectPrefix, duplicateWindowMs, maxAgeDays: 1, replicas: 1 });
  return stream;
}

/** Environment for a service under test: its own database and stream, any free port. */
export function serviceEnv(db: TestDatabase, stream: TestStream, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: db.url,
    NATS_URL: TEST_NATS_URL,
    NATS_STREAM: stream.name,
    NATS_SUBJECT_PREFIX: stream.subjectPrefix,
    GRPC_HOST: "127.0.0.1",
    GRPC_PORT: "0",
    OUTBOX_POLL_MS: "20",
    SHUTDOWN_GRACE_MS: "2000",
    LOG_LEVEL: "silent",
    ...extra,
  };
}

/** Where the kernel picks the local ports of outgoing connections (Linux's default where it cannot be read). */
function ephemeralPorts(): { low: number; high: number } {
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (low > 0 && high >= low) return { low, high };
  } catch {
    // Not Linux: keep to the default.
  }
  return { low: 32768, high: 60999 };
}

export const EPHEMERAL = ephemeralPorts();
const handedOut = new Set<number>();

/** Ports about to be listened on by a server started later: freePort() hands none of them out. */
export function reservePorts(ports: number[]): void {
  for (const port of ports) handedOut.add(port);
}

/**
 * A port nothing listens on right now, for a server to be started there later. It is taken below
 * the ephemeral range: a port the kernel picked (listen(0)) may meanwhile become the local port of
 * any process's outgoing connection, and the server then fails to start with EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  const low = Math.min(EPHEMERAL.low, 32768);
  // The port bound, or 0 where it could not be.
  const bind = (port: number) =>
    new Promise<number>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(0));
      server.listen(port, "127.0.0.1", () => {
        const bound = (server.address() as { port: number }).port;
        server.close(() => resolve(bound));
      });
    });
  // An ephemeral range that starts low leaves no room below it: take the kernel's pick.
  if (low < 21_000) return bind(0);
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * (low - 20_000));
    if (handedOut.has(port) || (await bind(port)) === 0) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port found between 20000 and ${low}`);
}
