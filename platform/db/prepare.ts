/**
 * drizzle asks postgres.js not to prepare its statements, and postgres.js then sends each one
 * twice over: once to learn its parameters' types (Parse, Describe), then to run it (Bind,
 * Execute), with PostgreSQL parsing and planning it every time. A prepared statement is parsed
 * once per connection and runs in one round trip. Each connection keeps the statements it
 * prepared (until it closes, within the hour), so only those likely to come again are: a
 * statement with many parameters is nearly always a list (VALUES, IN) whose length varies, each
 * length a statement of its own, used once. Bulk writes go through a recordset instead, with one
 * parameter whatever their length (recordset.ts).
 */
export const PREPARE_MAX_PARAMETERS = 32;

export const worthPreparing = (params: unknown[]): boolean => params.length > 0 && params.length <= PREPARE_MAX_PARAMETERS;
