import type http from "node:http";
import type http2 from "node:http2";
import { Code } from "@connectrpc/connect";
import { context, isSpanContextValid, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb";
import type { Logger } from "../../platform/logger";
import { rpcServerMetrics } from "../../platform/telemetry/rpc-metrics";
import { toConnectError } from "./errors";
import type { Forward } from "./forward";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;
type Handler = (req: Request, res: Response) => void;

/** The response header that names a call's trace, so a caller can look it up. */
export const TRACE_ID_HEADER = "x-trace-id";

const tracer = trace.getTracer("tally.gateway");
const PROBES = new Set(["/healthz", "/readyz"]);
// The codes that say the server failed, not the caller (OpenTelemetry's rule for RPC server spans).
const SERVER_FAULTS = new Set([Code.Unknown, Code.DeadlineExceeded, Code.Unimplemented, Code.Internal, Code.Unavailable, Code.DataLoss]);

/**
 * The gateway's server span for every call, whatever its protocol: HTTP/2 is
 * not instrumented automatically, and one span made here serves gRPC,
 * gRPC-Web, Connect and REST alike. It continues the caller's W3C trace
 * context when one comes, and the response names its trace in X-Trace-Id.
 * Probes are not traced.
 */
export function withTracing(handler: Handler): Handler {
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (PROBES.has(path)) return handler(req, res);
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const span = tracer.startSpan(
      `${req.method ?? "HTTP"} ${path.length > 120 ? `${path.slice(0, 120)}…` : path}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "http.request.method": req.method ?? "",
          "url.path": path,
          "network.protocol.version": req.httpVersion,
          "user_agent.original": String(req.headers["user-agent"] ?? ""),
        },
      },
      parent,
    );
    const { traceId } = span.spanContext();
    if (isSpanContextValid(span.spanContext())) res.setHeader(TRACE_ID_HEADER, traceId);
    // "close" comes after "finish", and alone when the client goes away first.
    res.once("close", () => {
      span.setAttribute("http.response.status_code", res.statusCode);
      if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    });
    context.with(trace.setSpan(parent, span), () => handler(req, res));
  };
}

/**
 * Names the gateway's span after the method it serves, with the caller's
 * protocol; counts the call in the RPC metrics, by method, protocol and
 * status; and logs it at debug level.
 */
export function instrumented(forward: Forward, log: Logger): Forward {
  const metrics = rpcServerMetrics("connect_rpc");
  return async (method, request, call) => {
    const startedAt = performance.now();
    const name = `${method.parent.typeName}/${method.name}`;
    const protocol = { "tally.protocol": call.protocol };
    const span = trace.getActiveSpan();
    span?.updateName(name);
    span?.setAttributes({ "rpc.method": name, ...protocol });
    const answered = (code: Code | 0, reason?: string) => {
      metrics.record(name, startedAt, code, reason, protocol);
      log.debug({ method: name, protocol: call.protocol, code: code === 0 ? "OK" : Code[code], reason, ms: Math.round(performance.now() - startedAt) }, "call answered");
    };
    try {
      const response = await forward(method, request, call);
      answered(0);
      return response;
    } catch (err) {
      const error = toConnectError(err);
      const reason = error.findDetails(ErrorInfoSchema)[0]?.reason;
      span?.setAttributes({ "rpc.response.status_code": error.code, ...(reason ? { "tally.error.reason": reason } : {}) });
      if (SERVER_FAULTS.has(error.code)) span?.setStatus({ code: SpanStatusCode.ERROR, message: error.rawMessage });
      answered(error.code, reason);
      throw err;
    }
  };
}
