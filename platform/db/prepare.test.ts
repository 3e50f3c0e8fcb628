import { inArray, sql } from "drizzle-orm";
import { integer, pgTable, text } from "drizzle-orm/pg-core";
import { createTestDatabase, testLogger, type TestDatabase } from "../../test/support/infra";
import { connectDatabase, type Database } from "./connect";
import { PREPARE_MAX_PARAMETERS } from "./prepare";
import { withTransactionRetry } from "./retry";

/** Which of drizzle's statements a connection prepares: those with a few parameters, once each. */

const items = pgTable("items", { id: integer("id").primaryKey(), name: text("name").notNull() });

let testDb: TestDatabase;
let database: Database<Record<string, never>>;

beforeAll(async () => {
  testDb = await createTestDatabase();
  // One connection: its prepared statements are all of the pool's.
  database = connectDatabase({ url: testDb.url, poolSize: 1, log: testLogger(), applicationName: "prepare-test" }, {});
  await database.db.execute(sql`create table items (id int primary key, name text not null)`);
  await database.db.insert(items).values(Array.from({ length: 100 }, (_, i) => ({ id: i, name: `item ${i}` })));
});

afterAll(async () => {
  await database.close();
  await testDb.drop();
});

const preparedSelects = async () =>
  (await database.sql<{ n: number }[]>`select count(*)::int as n from pg_prepared_statements where statement like 'select "id", "name" from "items"%'`)[0].n;

it("prepares a statement with a few parameters once, and runs it again as prepared", async () => {
  for (let i = 0; i < 3; i++) {
    expect(await database.db.select().from(items).where(inArray(items.id, [i, i + 1]))).toHaveLength(2);
  }
  expect(await preparedSelects()).toBe(1);
});

it("does not prepare a statement with many parameters, a list whose length varies", async () => {
  const before = await preparedSelects();
  for (const n of [PREPARE_MAX_PARAMETERS + 1, PREPARE_MAX_PARAMETERS + 2]) {
    const ids = Array.from({ length: n }, (_, i) => i);
    expect(await database.db.select().from(items).where(inArray(items.id, ids))).toHaveLength(n);
  }
  expect(await preparedSelects()).toBe(before);
});

it("answers the same through a prepared statement after the table changes under it", async () => {
  const byId = () => database.db.select().from(items).where(inArray(items.id, [1]));
  expect(await byId()).toEqual([{ id: 1, name: "item 1" }]);
  await database.db.execute(sql`alter table items add column note text`);
  expect(await byId()).toEqual([{ id: 1, name: "item 1" }]);
});

it("runs again a transaction whose prepared statement no longer fits its table (a column's type changed by a migration)", async () => {
  const read = () => database.db.transaction((tx) => tx.select().from(items).where(inArray(items.id, [2])));
  expect(await read()).toEqual([{ id: 2, name: "item 2" }]);
  await database.db.execute(sql`alter table items alter column name type varchar(100)`);
  let attempts = 0;
  const rows = await withTransactionRetry(() => {
    attempts++;
    return read();
  });
  expect(rows).toEqual([{ id: 2, name: "item 2" }]);
  // The first attempt met the stale statement inside its transaction.
  expect(attempts).toBe(2);
});

it("takes postgres.js's unsafe(text, options) form as well as unsafe(text, params, options)", async () => {
  // postgres.js takes it, though its types do not say so.
  const unsafeWithOptions = database.sql.unsafe as unknown as (text: string, options: { prepare: boolean }) => Promise<unknown>;
  expect(await unsafeWithOptions("select 1 as one", { prepare: false })).toEqual([{ one: 1 }]);
  expect(await database.sql.unsafe("select $1::int as two", [2])).toEqual([{ two: 2 }]);
});
