import { metrics, type Attributes } from "@opentelemetry/api";
import { status as Status } from "@grpc/grpc-js";

// From 1 ms to 10 s: where a money movement's latency lives.
const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export type RpcMetrics = ReturnType<typeof rpcServerMetrics>;

/**
 * Requests, errors and duration per RPC as a server answered them:
 * `rpc_server_call_duration_seconds` (its count is the requests) and
 * `rpc_server_errors_total`, both by method and gRPC status, errors also by
 * Tally's machine-readable reason.
 */
export function rpcServerMetrics(system: "grpc" | "connect_rpc") {
  const meter = metrics.getMeter("tally.rpc");
  const duration = meter.createHistogram("rpc.server.call.duration", {
    unit: "s",
    description: "Time to answer an RPC, by method and status",
    advice: { explicitBucketBoundaries: SECONDS },
  });
  const errors = meter.createCounter("rpc.server.errors", { description: "RPCs answered with an error, by method, status and reason" });
  return {
    /** code is the gRPC status (Connect's codes are the same numbers); reason names the domain error. */
    record(method: string, startedAt: number, code: number, reason?: string, extra: Attributes = {}): void {
      const attributes = { "rpc.system.name": system, "rpc.method": method, "rpc.response.status_code": Status[code] ?? String(code), ...extra };
      duration.record((performance.now() - startedAt) / 1000, attributes);
      if (code !== Status.OK) errors.add(1, { ...attributes, "error.type": reason ?? Status[code] ?? String(code) });
    },
  };
}
