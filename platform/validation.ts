import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { isId, normalizeId } from "./ids";
import { isKnownCurrency } from "./money";
import { DomainError, ErrorReason } from "./errors";

/** Input checks shared by every service's RPCs; each throws a DomainError naming the field. */

export function requireId(value: string, field: string): string {
  if (value === "") throw new DomainError(ErrorReason.MISSING_FIELD, `${field} is required`, field);
  if (!isId(value)) throw new DomainError(ErrorReason.INVALID_ID, `${field} must be a UUID`, field);
  return normalizeId(value);
}

export function requireCurrency(value: string, field = "currency"): string {
  if (value === "") throw new DomainError(ErrorReason.MISSING_FIELD, `${field} is required`, field);
  if (!isKnownCurrency(value)) {
    throw new DomainError(ErrorReason.UNKNOWN_CURRENCY, `${field} ${JSON.stringify(value.slice(0, 8))} is not a known ISO 4217 currency`, field);
  }
  return value;
}

const TOKEN = /^[A-Za-z0-9._:@-]+$/;

/** PostgreSQL text and jsonb cannot hold a NUL character: refuse it as input rather than fail on it. */
export const hasNul = (value: string): boolean => value.includes("\u0000");

export function requireToken(value: string, field: string, maxLength: number): string {
  if (value === "") throw new DomainError(ErrorReason.MISSING_FIELD, `${field} is required`, field);
  if (value.length > maxLength || !TOKEN.test(value)) {
    throw new DomainError(ErrorReason.INVALID_FIELD, `${field} must be 1 to ${maxLength} characters of A-Z a-z 0-9 . _ : @ -`, field);
  }
  return value;
}

const MAX_METADATA_KEYS = 32;

/** What is wrong with a metadata map, if anything: the key at fault, or "" for the map itself. */
export function metadataProblem(metadata: Record<string, string>): string | undefined {
  const keys = Object.keys(metadata);
  if (keys.length > MAX_METADATA_KEYS) return "";
  return keys.find((k) => k.length === 0 || k.length > 64 || metadata[k].length > 512 || hasNul(k) || hasNul(metadata[k]));
}

/**
 * The accounts one LookupAccounts call asks for at most: it answers with whole accounts, whose
 * metadata alone may take about 55 KB (32 keys and values of 576 characters, up to 3 bytes each
 * in UTF-8), and a gRPC message may take 16 MiB (platform/grpc/client.ts).
 */
export const ACCOUNTS_PER_LOOKUP = 200;

export function sameMetadata(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

export function requireMetadata(metadata: Record<string, string>, field = "metadata"): Record<string, string> {
  const problem = metadataProblem(metadata);
  if (problem !== undefined) {
    throw new DomainError(
      ErrorReason.INVALID_FIELD,
      `${field} holds at most ${MAX_METADATA_KEYS} keys of 1-64 characters, values of at most 512, and no NUL`,
      problem === "" ? field : `${field}.${problem}`,
    );
  }
  return metadata;
}

export function requireText(value: string, field: string, maxLength: number, required = false): string {
  if (required && value.trim() === "") throw new DomainError(ErrorReason.MISSING_FIELD, `${field} is required`, field);
  if (value.length > maxLength || hasNul(value)) {
    throw new DomainError(ErrorReason.INVALID_FIELD, `${field} is at most ${maxLength} characters, without NUL`, field);
  }
  return value;
}

// The times proto3 JSON can write (RFC 3339), and so every event and stored copy of a message.
const FIRST_SECOND = -62_135_596_800n; // 0001-01-01T00:00:00Z
const LAST_SECOND = 253_402_300_799n; // 9999-12-31T23:59:59Z

/** A time, when given, that can be written as JSON: from 0001-01-01 to 9999-12-31, nanos 0 to 999,999,999. */
export function requireTimestamp(value: Timestamp | undefined, field: string): void {
  if (value === undefined) return;
  if (value.seconds < FIRST_SECOND || value.seconds > LAST_SECOND || value.nanos < 0 || value.nanos > 999_999_999) {
    throw new DomainError(ErrorReason.INVALID_FIELD, `${field} must be a time from 0001-01-01 to 9999-12-31 (nanos 0 to 999,999,999)`, field);
  }
}
