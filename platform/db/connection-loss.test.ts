import postgres from "postgres";
import { TEST_DATABASE_ADMIN_URL } from "../../test/support/infra";
import { connectDatabase } from "./connect";
import { createLogger } from "../logger";

/**
 * A database connection that dies while held (PostgreSQL restarted, a backend
 * killed) must fail the statements sent on it, not the process.
 * postgres.js 3.4.9 threw from a timer when a statement was written to a
 * connection already closed, killing the process (patches/postgres+3.4.9.patch).
 */
let admin: postgres.Sql;
beforeAll(() => {
  admin = postgres(TEST_DATABASE_ADMIN_URL, { max: 1, onnotice: () => {} });
});
afterAll(() => admin.end());

const terminate = (pid: number) => admin`select pg_terminate_backend(${pid})`;

it("fails the statements sent on a connection that died, and the pool serves the next one", async () => {
  const database = connectDatabase({ url: TEST_DATABASE_ADMIN_URL, poolSize: 2, log: createLogger("test", "silent"), applicationName: "connection-loss-test" }, {});
  try {
    // A connection held for a while, as a transaction or a lock holds one.
    const held = await database.sql.reserve();
    const [{ pid }] = await held`select pg_backend_pid() as pid`;
    await terminate(pid as number);
    const outcomes: string[] = [];
    for (let i = 0; i < 3; i++) {
      outcomes.push(await held`select 1`.then(() => "answered", (err: { code?: string }) => err.code ?? "error"));
      // Let any write still scheduled for the dead connection run.
      await new Promise((r) => setTimeout(r, 20));
    }
    held.release();
    expect(outcomes[0]).toMatch(/^(ECONNRESET|CONNECTION_CLOSED)$/);
    expect(outcomes.slice(1)).toEqual(["CONNECTION_CLOSED", "CONNECTION_CLOSED"]);

    // The pool replaces the dead connection: within a statement or two, it answers again.
    let answered = false;
    for (let i = 0; i < 3 && !answered; i++) answered = await database.sql`select 1 as one`.then(() => true, () => false);
    expect(answered).toBe(true);
  } finally {
    await database.close();
  }
});
