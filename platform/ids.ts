import { v7 as uuidv7 } from "uuid";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A new time-ordered id (UUIDv7). */
export const newId = (): string => uuidv7();

/** Ids are UUIDs in canonical lower-case form; anything else is malformed. */
export const isId = (value: string): boolean => UUID.test(value);
