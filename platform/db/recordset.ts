import { getTableColumns, is, SQL, sql, type InferInsertModel, type InferSelectModel } from "drizzle-orm";
import { PgJson, PgJsonb, type PgColumn, type PgDatabase, type PgQueryResultHKT, type PgTable } from "drizzle-orm/pg-core";

/**
 * Many rows as one parameter. Written out as VALUES lists, a statement for n rows has a text of
 * its own and several parameters per value: drizzle builds it piece by piece (most of a busy
 * service's time in drizzle), and each connection parses and plans every new length anew. As one
 * jsonb array read back by `jsonb_to_recordset`, the statement's text is the same for any number
 * of rows: drizzle builds it in a few steps, and each connection prepares it once.
 */

type Executor = PgDatabase<PgQueryResultHKT, Record<string, unknown>>;

/** The fields of a recordset: each named as in SQL, typed and encoded as the column given. */
export type RecordFields = Record<string, PgColumn>;

const isJson = (column: PgColumn) => is(column, PgJsonb) || is(column, PgJson);

type Encode = (value: unknown) => unknown;

/** A column's value as JSON that PostgreSQL reads back into the column's type. */
function encoderOf(column: PgColumn): Encode {
  // Kept as JSON: the recordset's jsonb field takes it as it is.
  if (isJson(column)) return (value) => value ?? null;
  return (value) => {
    if (value === null || value === undefined) return null;
    const driver = column.mapToDriverValue(value);
    if (typeof driver === "bigint") return driver.toString();
    if (driver instanceof Uint8Array) return `\\x${Buffer.from(driver.buffer, driver.byteOffset, driver.byteLength).toString("hex")}`;
    // A lone surrogate would be refused by jsonb; sent as text it was stored as U+FFFD, as it is here.
    if (typeof driver === "string") return (driver as unknown as { toWellFormed(): string }).toWellFormed();
    return driver;
  };
}

const encoders = new WeakMap<PgColumn, Encode>();

function encoderFor(column: PgColumn): Encode {
  let encode = encoders.get(column);
  if (!encode) encoders.set(column, (encode = encoderOf(column)));
  return encode;
}

/** What insertRows cannot write as drizzle's insert would: refused rather than written otherwise. */
function unsupported(column: PgColumn): string | undefined {
  if (column.onUpdateFn) return "has $onUpdate";
  if (!isJson(column) && ["json", "jsonb"].includes(column.getSQLType())) return "is a custom JSON type";
  return undefined;
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** `jsonb_to_recordset($1) as alias(field type, …)`: the rows, each a record of `fields`, for a FROM clause. */
export function recordset(fields: RecordFields, rows: Record<string, unknown>[], alias = "r"): SQL {
  const names = Object.keys(fields);
  const encode = names.map((name) => encoderFor(fields[name]));
  const records = rows.map((row) => {
    const record: Record<string, unknown> = {};
    for (let i = 0; i < names.length; i++) record[names[i]] = encode[i](row[names[i]]);
    return record;
  });
  const shape = names.map((name) => `${quote(name)} ${fields[name].getSQLType()}`).join(", ");
  return sql`jsonb_to_recordset(${JSON.stringify(records)}::jsonb) as ${sql.raw(`${quote(alias)}(${shape})`)}`;
}

interface InsertOptions {
  /** What follows `on conflict`, e.g. sql`(id) do nothing`. */
  onConflict?: SQL;
  /** Return the rows inserted (or changed by the conflict clause), as drizzle's select would. */
  returning?: boolean;
}

/** How insertRows writes into a table: worked out once per table. */
interface InsertPlan {
  /** The columns it writes (every one but identities and generated ones), by their key in a row, each with its value where the row gives none. */
  columns: [string, PgColumn, () => unknown][];
  identities: [string, PgColumn][];
  fields: RecordFields;
  /** `insert into t (…) select …`, a column with a default in SQL taking it where the row gives nothing. */
  head: SQL;
  /** Every column by name, not *: a statement prepared before a column was added must return what it did. */
  returning: string;
}

const plans = new WeakMap<PgTable, InsertPlan>();

function planFor(table: PgTable): InsertPlan {
  const known = plans.get(table);
  if (known) return known;
  const all = Object.entries(getTableColumns(table) as Record<string, PgColumn>);
  const columns = all
    .filter(([, column]) => column.generatedIdentity === undefined && column.generated === undefined)
    .map(([key, column]): [string, PgColumn, () => unknown] => {
      // A default in SQL is left to the statement (coalesce below): the record carries null.
      const missing = column.defaultFn ?? (is(column.default, SQL) ? () => undefined : () => column.default);
      return [key, column, missing];
    });
  const fields: RecordFields = {};
  const selected: SQL[] = [];
  for (const [, column] of columns) {
    const why = unsupported(column);
    if (why) throw new Error(`insertRows: ${column.name} ${why}`);
    fields[column.name] = column;
    const field = sql.raw(`r.${quote(column.name)}`);
    if (is(column.default, SQL)) {
      if (!column.notNull) throw new Error(`insertRows: ${column.name} is nullable with a default in SQL, so a value not given cannot be told from a null`);
      selected.push(sql`coalesce(${field}, ${column.default})`);
    } else selected.push(field);
  }
  const names = sql.raw(columns.map(([, column]) => quote(column.name)).join(", "));
  const plan = {
    columns,
    identities: all.filter(([, column]) => column.generatedIdentity !== undefined),
    fields,
    head: sql`insert into ${table} (${names}) select ${sql.join(selected, sql`, `)}`,
    returning: ` returning ${all.map(([, column]) => quote(column.name)).join(", ")}`,
  };
  plans.set(table, plan);
  return plan;
}

/**
 * Inserts rows through a recordset, as drizzle's insert(table).values(rows) would: every column
 * of the table but identities, a value not given taking the column's default. A column with a
 * default in SQL (now(), '{}') takes it where the row gives nothing; such a column must be NOT NULL,
 * since in a recordset a value not given cannot be told from a null.
 */
export async function insertRows<T extends PgTable>(
  db: Executor,
  table: T,
  rows: InferInsertModel<T>[],
  options: InsertOptions = {},
): Promise<InferSelectModel<T>[]> {
  if (rows.length === 0) return [];
  const { columns, identities, fields, head, returning } = planFor(table);
  const records = rows.map((row) => {
    const given = row as Record<string, unknown>;
    const record: Record<string, unknown> = {};
    for (const [key, column, missing] of columns) {
      let value = given[key];
      if (value === undefined) value = missing();
      // A null here would become the column's default, where drizzle's insert fails: fail too.
      if (value === null && column.notNull) throw new Error(`insertRows: ${column.name} is NOT NULL but was given null`);
      if (value instanceof SQL) throw new Error(`insertRows: ${column.name} was given SQL, which a recordset cannot carry`);
      record[column.name] = value;
    }
    for (const [key, column] of identities) {
      if (given[key] !== undefined) throw new Error(`insertRows: ${column.name} is an identity, generated by the database`);
    }
    return record;
  });
  const statement = sql`${head} from ${recordset(fields, records)}`;
  if (options.onConflict) statement.append(sql` on conflict ${options.onConflict}`);
  if (!options.returning) {
    await db.execute(statement);
    return [];
  }
  statement.append(sql.raw(returning));
  return fromDriver(table, (await db.execute(statement)) as unknown as Record<string, unknown>[]);
}

/** Rows as the driver returned them (named as in SQL), as drizzle's select would give them. */
export function fromDriver<T extends PgTable>(table: T, rows: Record<string, unknown>[]): InferSelectModel<T>[] {
  const columns = Object.entries(getTableColumns(table) as Record<string, PgColumn>);
  return rows.map((raw) => {
    const row: Record<string, unknown> = {};
    for (const [key, column] of columns) {
      const value = raw[column.name];
      row[key] = value === null || value === undefined ? null : column.mapFromDriverValue(value);
    }
    return row as InferSelectModel<T>;
  });
}
