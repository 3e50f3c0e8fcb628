import { DomainError, ErrorReason } from "./errors";
import { isId } from "./ids";
import { INT64_MAX } from "./money";

/** AIP-158 paging with opaque keyset cursors, stable under concurrent inserts. */
export interface PageLimits {
  defaultSize: number;
  maxSize: number;
}

export const DEFAULT_PAGE_LIMITS: PageLimits = { defaultSize: 50, maxSize: 500 };

export function pageSize(requested: number, limits: PageLimits = DEFAULT_PAGE_LIMITS): number {
  if (!Number.isInteger(requested) || requested < 0) {
    throw new DomainError(ErrorReason.INVALID_FIELD, "page_size must not be negative", "page_size");
  }
  return requested === 0 ? limits.defaultSize : Math.min(requested, limits.maxSize);
}

export function encodePageToken(cursor: Record<string, string>): string {
  return Buffer.from(JSON.stringify(cursor)).toString("base64url");
}

/** Decodes a token made by encodePageToken, checking it holds exactly the expected keys. */
export function decodePageToken<K extends string>(token: string, keys: readonly K[]): Record<K, string> | undefined {
  if (token === "") return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (typeof value === "object" && value !== null) {
      const record = value as Record<string, unknown>;
      if (keys.every((k) => typeof record[k] === "string") && Object.keys(record).length === keys.length) {
        return record as Record<K, string>;
      }
    }
  } catch {
    // fall through to the error below
  }
  throw foreignToken();
}

export const foreignToken = () => new DomainError(ErrorReason.INVALID_PAGE_TOKEN, "page_token is not one this service issued", "page_token");

/** An id carried in a page token; anything else means the token is not ours. */
export function cursorId(value: string): string {
  if (!isId(value)) throw foreignToken();
  return value;
}

/** A bigint sequence carried in a page token. */
export function cursorSequence(value: string): bigint {
  if (!/^\d{1,19}$/.test(value) || BigInt(value) > INT64_MAX) throw foreignToken();
  return BigInt(value);
}

export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

/** A page from `limit + 1` rows fetched in cursor order: the extra row says another page follows. */
export function pageOf<T>(rows: T[], limit: number, cursorOf: (last: T) => Record<string, string>): Page<T> {
  const items = rows.slice(0, limit);
  return { items, nextPageToken: rows.length > limit ? encodePageToken(cursorOf(items[items.length - 1])) : "" };
}
