import { eq, inArray, sql } from "drizzle-orm";
import { bigint, customType, integer, jsonb, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { createTestDatabase, testLogger, type TestDatabase } from "../../test/support/infra";
import { newId } from "../ids";
import { connectDatabase, type Database } from "./connect";
import { databaseErrorCode } from "./errors";
import { insertRows, recordset } from "./recordset";

/** Rows written through one jsonb parameter read back exactly as drizzle reads and writes them. */

const bytea = customType<{ data: Uint8Array; driverData: Buffer }>({
  dataType: () => "bytea",
  toDriver: (value) => Buffer.from(value.buffer, value.byteOffset, value.byteLength),
});

const notes = pgTable("notes", {
  seq: bigint("seq", { mode: "bigint" }).generatedAlwaysAsIdentity(),
  id: uuid("id").primaryKey(),
  title: text("title").notNull(),
  amount: bigint("amount", { mode: "bigint" }).notNull().default(sql`0`),
  count: integer("count").notNull().default(7),
  tag: text("tag").notNull().$defaultFn(() => "made-here"),
  body: bytea("body"),
  meta: jsonb("meta").$type<Record<string, unknown>>().notNull().default(sql`'{}'::jsonb`),
  note: text("note"),
  at: timestamp("at", { withTimezone: true }),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

const sloppy = pgTable("sloppy", {
  id: uuid("id").primaryKey(),
  label: text("label").default(sql`'none'`),
});

let testDb: TestDatabase;
let database: Database<Record<string, never>>;

beforeAll(async () => {
  testDb = await createTestDatabase();
  // One connection: its prepared statements tell how many statement texts it saw.
  database = connectDatabase({ url: testDb.url, poolSize: 1, log: testLogger(), applicationName: "recordset-test" }, {});
  await database.db.execute(sql`
    create table notes (
      seq bigint generated always as identity, id uuid primary key, title text not null, amount bigint not null default 0,
      count integer not null default 7, tag text not null, body bytea, meta jsonb not null default '{}'::jsonb, note text,
      at timestamptz, created_at timestamptz not null default now())`);
  await database.db.execute(sql`create table sloppy (id uuid primary key, label text default 'none')`);
});

afterAll(async () => {
  await database.close();
  await testDb.drop();
});

const preparedInserts = async () =>
  (await database.sql<{ n: number }[]>`select count(*)::int as n from pg_prepared_statements where statement ilike 'insert into "notes"%'`)[0].n;

describe("insertRows", () => {
  it("writes every type as drizzle's insert would, and returns the rows as drizzle's select reads them", async () => {
    const at = new Date("2026-01-02T03:04:05.678Z");
    const row = {
      id: newId(),
      title: `quotes ' " \\ back\\slash, unicode ü € 𝄞, a newline\nand a tab\t`,
      amount: 9_223_372_036_854_775_807n,
      count: -3,
      tag: "given",
      body: new Uint8Array([0, 1, 254, 255]),
      meta: { nested: { list: [1, "two", null] }, flag: true },
      note: null,
      at,
    };
    const [returned] = await insertRows(database.db, notes, [row], { returning: true });
    const [read] = await database.db.select().from(notes).where(eq(notes.id, row.id));
    expect(returned).toEqual(read);
    expect(read).toMatchObject({ ...row, body: Buffer.from([0, 1, 254, 255]) });
    expect(read.at?.getTime()).toBe(at.getTime());
    expect(typeof read.seq).toBe("bigint");
  });

  it("gives each column left out its default: SQL defaults, values and functions; identities are generated", async () => {
    const [a, b] = await insertRows(database.db, notes, [{ id: newId(), title: "a" }, { id: newId(), title: "b", amount: 5n, meta: { k: "v" } }], { returning: true });
    expect(a).toMatchObject({ amount: 0n, count: 7, tag: "made-here", body: null, meta: {}, note: null, at: null });
    expect(b).toMatchObject({ amount: 5n, count: 7, meta: { k: "v" } });
    expect(b.seq).toBe(a.seq + 1n);
    expect(Math.abs(a.createdAt.getTime() - Date.now())).toBeLessThan(60_000);
  });

  it("returns only the rows a conflict clause let through, and leaves the others as they were", async () => {
    const kept = { id: newId(), title: "first" };
    await insertRows(database.db, notes, [kept]);
    const fresh = { id: newId(), title: "fresh" };
    const returned = await insertRows(database.db, notes, [{ ...kept, title: "second" }, fresh], { onConflict: sql`(id) do nothing`, returning: true });
    expect(returned.map((r) => r.id)).toEqual([fresh.id]);
    const [stored] = await database.db.select().from(notes).where(eq(notes.id, kept.id));
    expect(stored.title).toBe("first");
  });

  it("writes nothing of a statement that fails in the database", async () => {
    const [id, other] = [newId(), newId()];
    const failure = await insertRows(database.db, notes, [{ id: other, title: "x" }, { id, title: "x" }, { id, title: "again" }]).catch((err: unknown) => err);
    expect(databaseErrorCode(failure)).toBe("23505");
    expect(await database.db.select().from(notes).where(inArray(notes.id, [id, other]))).toEqual([]);
  });

  it("refuses, before writing, what drizzle's insert would not write: a null for NOT NULL, a value for an identity", async () => {
    const id = newId();
    await expect(insertRows(database.db, notes, [{ id, title: "x" }, { id: newId(), title: null as unknown as string }])).rejects.toThrow("title is NOT NULL but was given null");
    await expect(insertRows(database.db, notes, [{ id, title: "x", amount: null as unknown as bigint }])).rejects.toThrow("amount is NOT NULL but was given null");
    await expect(insertRows(database.db, notes, [{ id, title: "x", seq: 5n } as typeof notes.$inferInsert])).rejects.toThrow("seq is an identity");
    expect(await database.db.select().from(notes).where(eq(notes.id, id))).toEqual([]);
  });

  it("keeps JSON as given, strings, arrays and nulls included, and stores a lone surrogate in text as U+FFFD", async () => {
    const rows = [
      { id: newId(), title: "lone \ud800 surrogate", meta: { s: "a string" } },
      { id: newId(), title: "b", meta: ["a", 1, null] as unknown as Record<string, unknown> },
      { id: newId(), title: "c", meta: "just a string" as unknown as Record<string, unknown> },
    ];
    const returned = await insertRows(database.db, notes, rows, { returning: true });
    expect(returned.map((r) => r.meta)).toEqual([{ s: "a string" }, ["a", 1, null], "just a string"]);
    expect(returned[0].title).toBe("lone \ufffd surrogate");
    const [stored] = await database.sql<{ kind: string }[]>`select jsonb_typeof(meta) as kind from notes where id = ${rows[2].id}`;
    expect(stored.kind).toBe("string");
  });

  it("applies a conflict clause that updates, with excluded holding the row given", async () => {
    const id = newId();
    await insertRows(database.db, notes, [{ id, title: "first", amount: 5n }]);
    const upsert = (amount: bigint) =>
      insertRows(database.db, notes, [{ id, title: "ignored", amount }], { onConflict: sql`(id) do update set amount = notes.amount + excluded.amount`, returning: true });
    expect((await upsert(7n))[0]).toMatchObject({ title: "first", amount: 12n });
    expect((await upsert(-2n))[0].amount).toBe(10n);
  });

  it("uses one statement text for any number of rows, so its connection prepares it once", async () => {
    const lengths = [1, 2, 3, 50, 7];
    const rowsOf = (n: number) => Array.from({ length: n }, (_, i) => ({ id: newId(), title: `row ${i}`, amount: BigInt(i) }));
    const before = await preparedInserts();
    for (const n of lengths) await insertRows(database.db, notes, rowsOf(n), { onConflict: sql`(id) do nothing` });
    expect((await preparedInserts()) - before).toBe(1);
  });

  it("refuses a nullable column with a default in SQL, where a value left out could not be told from a null", async () => {
    await expect(insertRows(database.db, sloppy, [{ id: newId() }])).rejects.toThrow("label is nullable with a default in SQL");
  });
});

describe("recordset", () => {
  it("feeds an UPDATE … FROM, each row matched by id, typed by the columns given", async () => {
    const rows = [
      { id: newId(), title: "one" },
      { id: newId(), title: "two" },
    ];
    await insertRows(database.db, notes, rows);
    const changes = [
      { id: rows[0].id, amount: 100n, at: new Date("2026-05-05T00:00:00Z") },
      { id: rows[1].id, amount: -1n, at: null },
    ];
    const updated = await database.db
      .update(notes)
      .set({ amount: sql.raw("v.amount"), at: sql.raw("v.at") })
      .from(recordset({ id: notes.id, amount: notes.amount, at: notes.at }, changes, "v"))
      .where(sql`${notes.id} = v.id`)
      .returning({ id: notes.id, amount: notes.amount, at: notes.at });
    expect(updated.sort((x, y) => (x.amount < y.amount ? -1 : 1))).toEqual([
      { id: rows[1].id, amount: -1n, at: null },
      { id: rows[0].id, amount: 100n, at: new Date("2026-05-05T00:00:00Z") },
    ]);
  });
});
