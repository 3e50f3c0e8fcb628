import { Metadata } from "@grpc/grpc-js";

/** Call options naming the caller as the gateway does (`tally-principal`), for a service called directly. */
export function asCaller(principal: string): { metadata: Metadata } {
  const metadata = new Metadata();
  metadata.set("tally-principal", principal);
  return { metadata };
}
