import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { sql } from "drizzle-orm";
import { createTestDatabase, testLogger, type TestDatabase } from "../../test/support/infra";
import { recordSpans } from "../../test/support/tracing";
import { connectDatabase, type Database } from "./connect";

/** Database spans: one per query, one per transaction around its queries, never a parameter. */
const exporter = recordSpans();
const tracer = trace.getTracer("test");
let testDb: TestDatabase;
let database: Database<Record<string, never>>;

beforeAll(async () => {
  testDb = await createTestDatabase();
  database = connectDatabase({ url: testDb.url, poolSize: 2, log: testLogger(), applicationName: "tracing-test" }, {});
  await database.db.execute(sql`create table notes (id int primary key, body text not null)`);
});

afterAll(async () => {
  await database.close();
  await testDb.drop();
});

beforeEach(() => exporter.reset());

const dbSpans = () => exporter.getFinishedSpans().filter((s) => s.instrumentationScope.name === "tally.db");

it("makes a client span per drizzle query, a child of the caller's span, with the statement but not its values", async () => {
  const secret = "a value that must not be recorded";
  await tracer.startActiveSpan("caller", async (caller) => {
    await database.db.execute(sql`insert into notes (id, body) values (${1}, ${secret})`);
    caller.end();
  });
  const [query] = dbSpans();
  const callerSpan = exporter.getFinishedSpans().find((s) => s.name === "caller")!;
  expect(query.name).toBe("INSERT notes");
  expect(query.kind).toBe(SpanKind.CLIENT);
  expect(query.parentSpanContext?.spanId).toBe(callerSpan.spanContext().spanId);
  expect(query.attributes).toMatchObject({
    "db.system.name": "postgresql",
    "db.operation.name": "INSERT",
    "db.collection.name": "notes",
    "db.namespace": new URL(testDb.url).pathname.slice(1),
    "server.address": "127.0.0.1",
    "server.port": 5432,
  });
  expect(query.attributes["db.query.text"]).toContain("values ($1, $2)");
  expect(JSON.stringify(query.attributes)).not.toContain(secret);
  expect(query.endTime[0] * 1e9 + query.endTime[1]).toBeGreaterThanOrEqual(query.startTime[0] * 1e9 + query.startTime[1]);
});

/** Runs `work` inside a span of the test's own, as a request handler would. */
const inTrace = <T>(work: () => Promise<T>) =>
  tracer.startActiveSpan("caller", async (span) => {
    try {
      return await work();
    } finally {
      span.end();
    }
  });

it("wraps a transaction's queries in a transaction span", async () => {
  await inTrace(() =>
    database.db.transaction(async (tx) => {
      await tx.execute(sql`insert into notes (id, body) values (${2}, ${"b"})`);
      await tx.execute(sql`select body from notes where id = ${2}`);
    }),
  );
  const spans = dbSpans();
  const transaction = spans.find((s) => s.name === "transaction")!;
  const inside = spans.filter((s) => s.parentSpanContext?.spanId === transaction.spanContext().spanId).map((s) => s.name);
  // begin and commit are postgres.js's own, not queries of ours.
  expect(inside).toEqual(["INSERT notes", "SELECT notes"]);
  expect(transaction.status.code).not.toBe(SpanStatusCode.ERROR);
});

it("marks a failed query and its rolled-back transaction as errors with the SQLSTATE", async () => {
  await expect(
    inTrace(() =>
      database.db.transaction(async (tx) => {
        await tx.execute(sql`insert into notes (id, body) values (${3}, ${"c"})`);
        await tx.execute(sql`insert into notes (id, body) values (${3}, ${"again"})`);
      }),
    ),
  ).rejects.toThrow();
  const spans = dbSpans();
  const failed = spans.filter((s) => s.status.code === SpanStatusCode.ERROR).map((s) => [s.name, s.attributes["db.response.status_code"]]);
  expect(failed).toEqual([
    ["INSERT notes", "23505"],
    ["transaction", "23505"],
  ]);
  const [{ n }] = (await database.sql`select count(*)::int as n from notes where id = 3`) as unknown as { n: number }[];
  expect(n).toBe(0);
});

it("traces postgres.js tagged templates too, and leaves fragments alone", async () => {
  const rows = await inTrace(async () => database.sql`select ${database.sql("body")} from notes where id = ${1}`);
  expect(rows).toEqual([{ body: "a value that must not be recorded" }]);
  const spans = dbSpans();
  expect(spans.map((s) => s.name)).toEqual(["SELECT notes"]);
  expect(spans[0].parentSpanContext?.spanId).toBe(exporter.getFinishedSpans().find((s) => s.name === "caller")!.spanContext().spanId);
  expect(spans[0].attributes["db.query.text"]).toBe("select $1 from notes where id = $2");
});

it("makes no spans for work outside any trace, such as a relay polling", async () => {
  await database.db.transaction(async (tx) => {
    await tx.execute(sql`select count(*) from notes`);
  });
  await database.sql`select 1`;
  expect(dbSpans()).toEqual([]);
});
