import { isId } from "../../../../platform/ids";
import { isKnownCurrency } from "../../../../platform/money";
import { DomainError, ErrorReason } from "../../../../platform/errors";

/** Input checks shared by the account RPCs; each throws a DomainError naming the field. */

export function requireId(value: string, field: string): string {
  if (value === "") throw new DomainError(ErrorReason.MISSING_FIELD, `${field} is required`, field);
  if (!isId(value)) throw new DomainError(ErrorReason.INVALID_ID, `${field} must be a UUID`, field);
  return value;
}

export function requireCurrency(value: string, field = "currency"): string {
  if (value === "") throw new DomainError(ErrorReason.MISSING_FIELD, `${field} is required`, field);
  if (!isKnownCurrency(value)) throw new DomainError(ErrorReason.UNKNOWN_CURRENCY, `${field} ${JSON.stringify(value)} is not a known ISO 4217 currency`, field);
  return value;
}

const TOKEN = /^[A-Za-z0-9._:@-]+$/;

export function requireToken(value: string, field: string, maxLength: number): string {
  if (value === "") throw new DomainError(ErrorReason.MISSING_FIELD, `${field} is required`, field);
  if (value.length > maxLength || !TOKEN.test(value)) {
    throw new DomainError(ErrorReason.INVALID_FIELD, `${field} must be 1 to ${maxLength} characters of A-Z a-z 0-9 . _ : @ -`, field);
  }
  return value;
}

export function requireMetadata(metadata: Record<string, string>, field = "metadata"): Record<string, string> {
  const keys = Object.keys(metadata);
  if (keys.length > 32) throw new DomainError(ErrorReason.INVALID_FIELD, `${field} holds at most 32 keys`, field);
  for (const key of keys) {
    if (key.length === 0 || key.length > 64 || metadata[key].length > 512) {
      throw new DomainError(ErrorReason.INVALID_FIELD, `${field} keys are 1-64 characters and values at most 512`, `${field}.${key}`);
    }
  }
  return metadata;
}

export function requireText(value: string, field: string, maxLength: number): string {
  if (value.length > maxLength) throw new DomainError(ErrorReason.INVALID_FIELD, `${field} is at most ${maxLength} characters`, field);
  return value;
}
