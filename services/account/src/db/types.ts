import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import type { schema } from "./schema";

export type AccountDb = PostgresJsDatabase<typeof schema>;
export type AccountTx = Parameters<Parameters<AccountDb["transaction"]>[0]>[0];
