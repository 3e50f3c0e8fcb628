import type { Metadata } from "@grpc/grpc-js";

/** Who made a call, as the gateway names them in `tally-principal` ("" for a call from inside). */
export function callerOf(metadata: Metadata): string {
  return String(metadata.get("tally-principal")[0] ?? "");
}

/** The caller as a person reads it: the gateway percent-encodes a subject with anything but printable ASCII, or a "%". */
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
