import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import { count, eq, sql } from "drizzle-orm";
import { getTableConfig, pgSchema, serial, text, uuid } from "drizzle-orm/pg-core";
import { createTestDatabase, testLogger, type TestDatabase } from "../../test/support/infra";
import { connectDatabase, type Database } from "../db/connect";
import { newId } from "../ids";
import { applyOnce, type TransactionOf } from "./apply-once";
import { inboxTable } from "./table";

/**
 * The inbox against a real PostgreSQL: the tables are created from their
 * drizzle definitions, so the test exercises exactly what a migration would hold.
 */

const testSchema = pgSchema("inbox_test");
const inbox = inboxTable(testSchema);
/** Stands for a consumer's effect: one row per application of an event. */
const effects = testSchema.table("effects", {
  seq: serial("seq").primaryKey(),
  consumer: text("consumer").notNull(),
  eventId: uuid("event_id").notNull(),
});

const log = testLogger();
let database: TestDatabase;
let store: Database<Record<string, never>>;

beforeAll(async () => {
  database = await createTestDatabase();
  store = connectDatabase({ url: database.url, poolSize: 25, log, applicationName: "inbox-test" }, {});
  const statements = await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ testSchema, inbox, effects }));
  for (const statement of statements) await store.sql.unsafe(statement);
});

afterAll(async () => {
  await store?.close();
  await database?.drop();
});

/** The effect of one delivery: records it, and counts how often it ran. */
function recorder(consumer: string, eventId: string) {
  const calls = { count: 0 };
  const effect = async (tx: TransactionOf<typeof store.db>) => {
    calls.count++;
    const [row] = await tx.insert(effects).values({ consumer, eventId }).returning({ seq: effects.seq });
    return row.seq;
  };
  return { calls, effect };
}

async function effectCount(eventId: string, consumer?: string): Promise<number> {
  const where = consumer ? sql`${effects.eventId} = ${eventId} and ${effects.consumer} = ${consumer}` : eq(effects.eventId, eventId);
  const [row] = await store.db.select({ n: count() }).from(effects).where(where);
  return row.n;
}

async function inboxRows(eventId: string) {
  return store.db.select().from(inbox).where(eq(inbox.eventId, eventId)).orderBy(inbox.consumer);
}

describe("inboxTable", () => {
  it("keys rows by consumer and event, with an index for pruning by age", () => {
    const config = getTableConfig(inbox);
    expect(config.schema).toBe("inbox_test");
    expect(config.name).toBe("inbox");
    expect(config.primaryKeys[0].columns.map((c) => c.name)).toEqual(["consumer", "event_id"]);
    expect(config.indexes.map((i) => i.config.name)).toEqual(["inbox_applied_at_idx"]);
  });
});

describe("applyOnce", () => {
  it("applies an event once when it is delivered twice", async () => {
    const eventId = newId();
    const { calls, effect } = recorder("ledger", eventId);

    const first = await applyOnce(store.db, inbox, "ledger", eventId, effect);
    const second = await applyOnce(store.db, inbox, "ledger", eventId, effect);

    expect(first).toEqual({ applied: true, result: expect.any(Number) });
    expect(second).toEqual({ applied: false });
    expect(calls.count).toBe(1);
    expect(await effectCount(eventId)).toBe(1);
    const rows = await inboxRows(eventId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ consumer: "ledger", eventId });
    expect(rows[0].appliedAt).toBeInstanceOf(Date);
  });

  it("applies an event once when twenty deliveries of it race", async () => {
    const eventId = newId();
    const { calls, effect } = recorder("ledger", eventId);
    // The winner holds its transaction open a moment, so the others queue on its inbox row.
    const slowEffect: typeof effect = async (tx) => {
      await tx.execute(sql`select pg_sleep(0.05)`);
      return effect(tx);
    };

    const outcomes = await Promise.all(Array.from({ length: 20 }, () => applyOnce(store.db, inbox, "ledger", eventId, slowEffect)));

    expect(outcomes.filter((o) => o.applied)).toHaveLength(1);
    expect(outcomes.filter((o) => !o.applied)).toHaveLength(19);
    expect(calls.count).toBe(1);
    expect(await effectCount(eventId)).toBe(1);
    expect(await inboxRows(eventId)).toHaveLength(1);
  });

  it("rolls the inbox row back with an effect that fails, so the next delivery applies it", async () => {
    const eventId = newId();
    const { calls, effect } = recorder("ledger", eventId);
    const failing: typeof effect = async (tx) => {
      await effect(tx);
      throw new Error("the effect failed after writing");
    };

    await expect(applyOnce(store.db, inbox, "ledger", eventId, failing)).rejects.toThrow("the effect failed after writing");
    expect(await inboxRows(eventId)).toHaveLength(0);
    expect(await effectCount(eventId)).toBe(0);

    const retried = await applyOnce(store.db, inbox, "ledger", eventId, effect);
    expect(retried.applied).toBe(true);
    expect(calls.count).toBe(2);
    expect(await effectCount(eventId)).toBe(1);
    expect(await inboxRows(eventId)).toHaveLength(1);
  });

  it("tracks the same event separately for each consumer", async () => {
    const eventId = newId();
    const ledger = recorder("ledger", eventId);
    const risk = recorder("risk", eventId);

    expect((await applyOnce(store.db, inbox, "ledger", eventId, ledger.effect)).applied).toBe(true);
    expect((await applyOnce(store.db, inbox, "risk", eventId, risk.effect)).applied).toBe(true);
    expect((await applyOnce(store.db, inbox, "risk", eventId, risk.effect)).applied).toBe(false);
    expect((await applyOnce(store.db, inbox, "ledger", eventId, ledger.effect)).applied).toBe(false);

    expect([ledger.calls.count, risk.calls.count]).toEqual([1, 1]);
    expect(await effectCount(eventId, "ledger")).toBe(1);
    expect(await effectCount(eventId, "risk")).toBe(1);
    expect((await inboxRows(eventId)).map((r) => r.consumer)).toEqual(["ledger", "risk"]);
  });

  it("recognises an event id in either case as the same event", async () => {
    const eventId = newId();
    const { calls, effect } = recorder("ledger", eventId);
    expect((await applyOnce(store.db, inbox, "ledger", eventId, effect)).applied).toBe(true);
    expect((await applyOnce(store.db, inbox, "ledger", eventId.toUpperCase(), effect)).applied).toBe(false);
    expect(calls.count).toBe(1);
  });

  it("applies an event first delivered with an upper-case id, once", async () => {
    const eventId = newId().toUpperCase();
    const { calls, effect } = recorder("ledger", eventId);
    expect((await applyOnce(store.db, inbox, "ledger", eventId, effect)).applied).toBe(true);
    expect((await applyOnce(store.db, inbox, "ledger", eventId.toLowerCase(), effect)).applied).toBe(false);
    expect(calls.count).toBe(1);
  });

  it("returns the effect's result", async () => {
    const outcome = await applyOnce(store.db, inbox, "ledger", newId(), async (tx) => {
      const [row] = await tx.execute<{ answer: number }>(sql`select 42 as answer`);
      return row.answer;
    });
    expect(outcome).toEqual({ applied: true, result: 42 });
  });
});
