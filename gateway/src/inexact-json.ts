import type { JsonValue } from "@bufbuild/protobuf";
import { createAsyncIterable, type UniversalHandler, type UniversalServerRequest, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJsonBytes, parseContentType } from "@connectrpc/connect/protocol-connect";
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
 * connect-es reads a Connect JSON request with JSON.parse, which rounds an integer beyond 2^53 to
 * a neighbour without a word: an amount would move other than asked. A request of a known length
 * within `maxBytes` is read here first and refused with the field; any other is connect-es's
 * alone (one too long it refuses unread, and a body left part-read would stall its connection).
 */
export function refuseInexactJson(handler: UniversalHandler, maxBytes: number): UniversalHandler {
  const wrapped = async (request: UniversalServerRequest): Promise<UniversalServerResponse> => {
    const type = parseContentType(request.header.get("content-type"));
    const length = Number(request.header.get("content-length") ?? NaN);
    const body = request.body;
    // Only uncompressed unary JSON: binary cannot carry the mistake, and a compressed body is connect-es's to read.
    if (!type || type.stream || type.binary || request.header.has("content-encoding") || !(length <= maxBytes) || !isIterable(body)) return handler(request);
    const chunks: Uint8Array[] = [];
    for await (const chunk of body) chunks.push(chunk);
    const bytes = Buffer.concat(chunks);
    try {
      requireExactIntegers(JSON.parse(bytes.toString("utf8")) as JsonValue);
    } catch (err) {
      if (err instanceof DomainError) {
        const error = toConnectError(err);
        return { status: codeToHttpStatus(error.code), header: new Headers({ "content-type": "application/json" }), body: createAsyncIterable([errorToJsonBytes(error, {})]) };
      }
      // Not JSON: connect-es says so.
    }
    return handler({ ...request, body: createAsyncIterable([bytes]) });
  };
  return Object.assign(wrapped, handler);
}

const isIterable = (body: unknown): body is AsyncIterable<Uint8Array> => typeof body === "object" && body !== null && Symbol.asyncIterator in body;
