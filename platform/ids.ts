import { v7 as uuidv7 } from "uuid";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A new time-ordered id (UUIDv7). */
export const newId = (): string => uuidv7();

/** Ids are UUIDs in their canonical 8-4-4-4-12 form, in either case; anything else is malformed. */
export const isId = (value: string): boolean => UUID.test(value);

/** UUIDs are case-insensitive: Tally stores and compares them lower-case. */
export const normalizeId = (value: string): string => (isId(value) ? value.toLowerCase() : value);
