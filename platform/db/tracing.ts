import { context, SpanKind, SpanStatusCode, trace, type Context, type Span } from "@opentelemetry/api";
import type postgres from "postgres";
import { databaseErrorCode } from "./errors";
import { worthPreparing } from "./prepare";

const tracer = trace.getTracer("tally.db");

/** Where the spans say the database is. */
export interface DatabaseTarget {
  name: string;
  host: string;
  port: number;
}

export function databaseTarget(url: string): DatabaseTarget {
  const parsed = new URL(url);
  return { name: decodeURIComponent(parsed.pathname.slice(1)) || "postgres", host: parsed.hostname, port: Number(parsed.port || 5432) };
}

/**
 * postgres.js has no OpenTelemetry instrumentation, so this wraps a pool in
 * one (and has drizzle's statements prepared where that pays: see prepare.ts): every query (drizzle's, which all go through unsafe(), and tagged
 * templates alike) is a client span from when it is issued until it settles,
 * and every transaction a span around its queries. Only the statement text is
 * recorded, never the values bound to it. Queries outside any trace (the
 * relay's and sweepers' polling) make no spans: each would be a trace of its
 * own, several a second, saying nothing.
 */
export function tracedSql(sql: postgres.Sql, target: DatabaseTarget): postgres.Sql {
  return wrap(sql, target);
}

function wrap<T extends postgres.Sql | postgres.TransactionSql>(sql: T, target: DatabaseTarget): T {
  return new Proxy(sql, {
    // sql`...` runs a query; sql(value) and sql(identifier) only build fragments.
    apply(fn, thisArg, args: unknown[]) {
      const query = Reflect.apply(fn, thisArg, args);
      const strings = args[0] as TemplateStringsArray | undefined;
      return Array.isArray(strings) && "raw" in strings ? traceQuery(query, strings.reduce((text, s, i) => `${text}$${i}${s}`), target) : query;
    },
    get(obj, property) {
      const value = Reflect.get(obj, property, obj) as unknown;
      if (typeof value !== "function") return value;
      if (property === "unsafe") {
        return (text: string, paramsOrOptions?: unknown[] | { prepare?: boolean }, maybeOptions: { prepare?: boolean } = {}) => {
          // unsafe(text, options) is unsafe(text, [], options).
          const [params, options] = Array.isArray(paramsOrOptions) ? [paramsOrOptions, maybeOptions] : [[], paramsOrOptions ?? {}];
          const prepare = options.prepare || worthPreparing(params);
          return traceQuery((value as (...a: unknown[]) => unknown)(text, params, { ...options, prepare }), text, target);
        };
      }
      if (property === "begin" || property === "savepoint") return traceTransaction(value as (...a: unknown[]) => Promise<unknown>, String(property), target);
      return value;
    },
  });
}

function traceQuery<Q>(query: Q, text: string, target: DatabaseTarget): Q {
  if (!trace.getSpan(context.active())) return query;
  const { operation, table } = summary(text);
  const span = tracer.startSpan(table ? `${operation} ${table}` : operation, {
    kind: SpanKind.CLIENT,
    attributes: {
      "db.system.name": "postgresql",
      "db.namespace": target.name,
      "db.operation.name": operation,
      ...(table ? { "db.collection.name": table } : {}),
      "db.query.text": text.length > 2000 ? `${text.slice(0, 2000)}…` : text,
      "server.address": target.host,
      "server.port": target.port,
    },
  });
  // The native then: postgres.js's own would send the query now, before drizzle has said how it wants the rows.
  Promise.prototype.then.call(
    query,
    () => span.end(),
    (err: unknown) => endWithError(span, err),
  );
  return query;
}

/** begin(fn) or begin(options, fn): a span around the whole transaction, its queries inside it. */
function traceTransaction(begin: (...args: unknown[]) => Promise<unknown>, kind: string, target: DatabaseTarget) {
  return (...args: unknown[]) => {
    const fn = args.pop() as (tx: postgres.TransactionSql) => unknown;
    if (!trace.getSpan(context.active())) return begin(...args, (tx: postgres.TransactionSql) => fn(wrap(tx, target)));
    const span = tracer.startSpan(kind === "begin" ? "transaction" : "savepoint", {
      kind: SpanKind.CLIENT,
      attributes: { "db.system.name": "postgresql", "db.namespace": target.name, "server.address": target.host, "server.port": target.port },
    });
    const inside: Context = trace.setSpan(context.active(), span);
    return begin(...args, (tx: postgres.TransactionSql) => context.with(inside, () => fn(wrap(tx, target)))).then(
      (result) => {
        span.end();
        return result;
      },
      (err: unknown) => {
        endWithError(span, err);
        throw err;
      },
    );
  };
}

function endWithError(span: Span, err: unknown): void {
  const code = databaseErrorCode(err);
  if (code) span.setAttribute("db.response.status_code", code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: code ?? "query failed" });
  span.end();
}

/** "SELECT" and "account.accounts" from the statement; enough to name a span. */
function summary(text: string): { operation: string; table: string | undefined } {
  const operation = (/^\s*([a-z]+)/i.exec(text)?.[1] ?? "query").toUpperCase();
  const table = /\b(?:from|into|update|join)\s+("?[\w$]+"?(?:\."?[\w$]+"?)?)/i.exec(text)?.[1]?.replace(/"/g, "");
  return { operation, table };
}
