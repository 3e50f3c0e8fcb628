import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import type { schema } from "./schema";

export type TransactionsDb = PostgresJsDatabase<typeof schema>;
export type TransactionsTx = Parameters<Parameters<TransactionsDb["transaction"]>[0]>[0];
