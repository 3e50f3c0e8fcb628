import { readdirSync } from "node:fs";
import path from "node:path";
import { getTableName } from "drizzle-orm";
import postgres from "postgres";
import { schema } from "../../services/account/src/db/schema";
import { createTestDatabase, testLogger, type TestDatabase } from "../../test/support/infra";
import { projectRoot } from "../project-root";
import { migrateSchema } from "./migrate";

const MIGRATIONS = path.join(projectRoot(), "services/account/migrations");
const migrationFiles = () => readdirSync(MIGRATIONS).filter((f) => f.endsWith(".sql"));
// Every table the account service's schema declares, and the journal.
const EXPECTED_TABLES = ["__migrations", ...Object.values(schema).map((table) => getTableName(table))].sort();

let database: TestDatabase;
let sql: postgres.Sql;

const migrate = () => migrateSchema({ url: database.url, schema: "account", migrationsFolder: MIGRATIONS, log: testLogger() });

async function tablesIn(schema: string): Promise<string[]> {
  const rows = await sql<{ table_name: string }[]>`
    select table_name from information_schema.tables where table_schema = ${schema} order by table_name`;
  return rows.map((r) => r.table_name);
}

async function journal(): Promise<{ hash: string; created_at: string }[]> {
  return sql`select hash, created_at::text from account.__migrations order by id`;
}

beforeAll(async () => {
  database = await createTestDatabase();
  sql = postgres(database.url, { max: 2, onnotice: () => {} });
});
afterAll(async () => {
  await sql?.end();
  await database?.drop();
});

describe("migrateSchema", () => {
  it("applies each migration once when five replicas migrate at the same time", async () => {
    expect(migrationFiles().length).toBeGreaterThan(0);
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => migrate()));
    expect(results.map((r) => r.status)).toEqual(Array(5).fill("fulfilled"));

    expect(await tablesIn("account")).toEqual(EXPECTED_TABLES);
    const rows = await journal();
    expect(rows).toHaveLength(migrationFiles().length);
    expect(new Set(rows.map((r) => r.hash)).size).toBe(rows.length);
  });

  it("keeps the journal in the service's own schema, not drizzle's default one", async () => {
    expect(await tablesIn("drizzle")).toEqual([]);
  });

  it("does nothing when run again on a migrated database", async () => {
    const before = await journal();
    await migrate();
    expect(await journal()).toEqual(before);
    expect(await tablesIn("account")).toEqual(EXPECTED_TABLES);
  });

  it("releases its advisory lock so the next migration can take it", async () => {
    const held = await sql`
      select count(*)::int as n from pg_locks
      where locktype = 'advisory' and database = (select oid from pg_database where datname = current_database())`;
    expect(held[0].n).toBe(0);
    const other = postgres(database.url, { max: 1, onnotice: () => {} });
    try {
      const [row] = await other`select pg_try_advisory_lock(hashtext('tally.migrate.account')) as locked`;
      expect(row.locked).toBe(true);
    } finally {
      await other.end();
    }
  });

  it("fails when the migrations folder holds no journal", async () => {
    await expect(
      migrateSchema({ url: database.url, schema: "account", migrationsFolder: path.join(MIGRATIONS, "missing"), log: testLogger() }),
    ).rejects.toThrow();
  });
});
