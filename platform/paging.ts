import { DomainError, ErrorReason } from "./errors";

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
  throw new DomainError(ErrorReason.INVALID_PAGE_TOKEN, "page_token is not one this service issued", "page_token");
}
