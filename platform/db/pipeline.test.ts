import { sql } from "drizzle-orm";
import { integer, pgTable, timestamp } from "drizzle-orm/pg-core";
import { createTestDatabase, testLogger, type TestDatabase } from "../../test/support/infra";
import { connectDatabase, type Database } from "./connect";
import { databaseErrorCode } from "./errors";
import { pipelined } from "./pipeline";

const marks = pgTable("marks", { id: integer("id").primaryKey(), at: timestamp("at", { withTimezone: true }).notNull().defaultNow() });

let testDb: TestDatabase;
let database: Database<Record<string, never>>;

beforeAll(async () => {
  testDb = await createTestDatabase();
  database = connectDatabase({ url: testDb.url, poolSize: 2, log: testLogger(), applicationName: "pipeline-test" }, {});
  await database.db.execute(sql`create table marks (id int primary key, at timestamptz not null default clock_timestamp())`);
});

afterAll(async () => {
  await database.close();
  await testDb.drop();
});

const ids = async () => (await database.sql<{ id: number }[]>`select id from marks order by at`).map((r) => r.id);

describe("pipelined statements in a transaction", () => {
  beforeEach(() => database.db.execute(sql`truncate marks`));

  it("all run, in the order started, and commit together", async () => {
    await database.db.transaction(async (tx) => {
      await pipelined([3, 1, 2].map((id) => tx.execute(sql`insert into marks (id) values (${id})`)));
    });
    expect(await ids()).toEqual([3, 1, 2]);
  });

  it("run in the order started, whether drizzle's builder or raw SQL: each sees what those before it did, none what those after it do", async () => {
    const [before, , after] = await database.db.transaction((tx) =>
      pipelined([tx.select().from(marks).for("update"), tx.execute(sql`insert into marks (id) values (1)`), tx.select().from(marks)]),
    );
    expect([before.map((r) => r.id), after.map((r) => r.id)]).toEqual([[], [1]]);
  });

  it("fail with the first failure's cause, not the aborted transaction of those after it, and leave nothing", async () => {
    await database.db.execute(sql`insert into marks (id) values (2)`);
    const failure = await database.db
      .transaction(async (tx) => {
        await pipelined([1, 2, 3, 4].map((id) => tx.execute(sql`insert into marks (id) values (${id})`)));
      })
      .catch((err: unknown) => err);
    expect(databaseErrorCode(failure)).toBe("23505");
    expect(await ids()).toEqual([2]);
  });
});
