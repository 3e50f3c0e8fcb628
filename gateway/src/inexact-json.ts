import type { JsonValue } from "@bufbuild/protobuf";
import { DomainError, ErrorReason } from "../../platform/errors";
import { toConnectError } from "./errors";

/**
 * The path of the first integer in parsed JSON too large for a double to hold exactly: parsed, it
 * may be another number already (9007199254740993 reads as 9007199254740992), so it is refused.
 * Walked with a list, not by recursion: JSON nested ten thousand deep parses, and must not overflow the stack here.
 */
function inexactInteger(json: JsonValue): string | undefined {
  const pending: [JsonValue, string][] = [[json, ""]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [value, path] = next;
    if (typeof value === "number" && Number.isInteger(value) && !Number.isSafeInteger(value)) return path;
    if (value === null || typeof value !== "object") continue;
    const entries = Object.entries(value);
    // Last first onto the list, so the first is looked at first.
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, item] = entries[i];
      pending.push([item, Array.isArray(value) ? `${path}[${key}]` : path ? `${path}.${key}` : key]);
    }
  }
  return undefined;
}

/** Refuses a JSON request carrying an integer JSON cannot carry exactly (a 64-bit one sent as a number, not a string). */
export function requireExactIntegers(json: JsonValue): void {
  const field = inexactInteger(json);
  if (field === undefined) return;
  throw new DomainError(ErrorReason.MALFORMED_REQUEST, `${field || "the body"} is a number beyond 2^53, which JSON cannot carry exactly: send a 64-bit integer as a string`, field);
}

/**
 * connect-es turns every JSON request body into text with its JSON options' textDecoder, whatever
 * the protocol (Connect, gRPC-Web, gRPC), framing or compression, then reads it with JSON.parse,
 * which rounds an integer beyond 2^53 to a neighbour without a word: an amount would move other
 * than asked. This decoder refuses such a body first, naming the field.
 */
export function exactIntegersTextDecoder(): { decode(input?: Uint8Array): string } {
  const utf8 = new TextDecoder();
  return {
    decode(input) {
      const text = utf8.decode(input);
      let json: JsonValue;
      try {
        json = JSON.parse(text) as JsonValue;
      } catch {
        return text; // Not JSON: connect-es says so.
      }
      try {
        requireExactIntegers(json);
      } catch (err) {
        throw err instanceof DomainError ? toConnectError(err) : err;
      }
      return text;
    },
  };
}
