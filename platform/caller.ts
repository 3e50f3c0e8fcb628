import type { Metadata } from "@grpc/grpc-js";

/** Who made a call, as the gateway names them in `tally-principal` ("" for a call from inside). */
export function callerOf(metadata: Metadata): string {
  return String(metadata.get("tally-principal")[0] ?? "");
}

/**
 * A token's subject as the services are told it (`tally-principal`). Metadata values are
 * printable ASCII, so anything else travels percent-encoded; and so does any subject with a "%"
 * in it, so that no subject reads as another's encoding: each subject has one name.
 */
export function callerName(subject: string): string {
  return /^[\x20-\x24\x26-\x7e]*$/.test(subject) ? subject : encodeURIComponent(subject);
}

/** The caller as a person reads it: callerName undone. */
export function callerDisplayName(caller: string): string {
  try {
    return caller.includes("%") ? decodeURIComponent(caller) : caller;
  } catch {
    return caller; // not the gateway's encoding: shown as sent
  }
}

/**
 * A request id as its idempotency key: each caller's own, so two callers who pick the same id
 * (say `order-1`) make two requests, and no one can take an id another will use. A request id
 * has no "/", so the last one parts the caller from the id: two different pairs never meet.
 */
export function callerRequestKey(caller: string, requestId: string): string {
  return caller === "" ? requestId : `${caller}/${requestId}`;
}
