import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import type { schema } from "./schema";

export type RiskDb = PostgresJsDatabase<typeof schema>;
export type RiskTx = Parameters<Parameters<RiskDb["transaction"]>[0]>[0];
