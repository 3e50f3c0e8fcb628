import fs from "node:fs";
import type net from "node:net";
import { cors as connectCors } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import { exactIntegersTextDecoder } from "./inexact-json";
import { answerUndecodableAsInvalid } from "./malformed-requests";
import corsMiddleware from "cors";
import type { Lifecycle } from "../../platform/lifecycle";
import type { Logger } from "../../platform/logger";
import { createAuthenticator } from "./auth/authenticate";
import { OwnershipDirectory } from "./auth/ownership";
import { createBackends } from "./backends";
import { BalanceReads } from "./balance-reads";
import { DEVELOPMENT_SECRET, type GatewayConfig } from "./config";
import { createForwarder } from "./forward";
import { withGrpcUnary } from "./grpc-unary";
import { createOnePortServer, createTlsServer } from "./one-port";
import { backendGroups, probes } from "./probes";
import { RateLimiter } from "./rate-limit";
import { instrumented, TRACE_ID_HEADER, withTracing } from "./tracing";
import { restHandler } from "./rest";
import { registerReflection } from "./reflection";
import { registerRoutes } from "./routes";

export interface GatewayHandle {
  port: number;
  server: net.Server;
}

type Handler = Parameters<typeof createOnePortServer>[0];

/** Lets the configured browser origins call the API; the headers are Connect's own plus Tally's. */
function withCors(origins: string[], handler: Handler): Handler {
  if (origins.length === 0) return handler;
  const cors = corsMiddleware({
    origin: origins,
    methods: [...connectCors.allowedMethods, "PUT", "PATCH", "DELETE"],
    allowedHeaders: [...connectCors.allowedHeaders, "Authorization", "Idempotency-Key", "X-Server-Timeout"],
    exposedHeaders: [...connectCors.exposedHeaders, "Retry-After", "WWW-Authenticate", TRACE_ID_HEADER],
    maxAge: 7200,
  });
  return (req, res) => cors(req as never, res as never, () => handler(req, res));
}

/**
 * The only public entry point: one port speaking gRPC (HTTP/2), gRPC-Web,
 * Connect (HTTP/1.1 and HTTP/2) and REST JSON, in cleartext or over TLS.
 * Every call of every protocol gets one server span and goes through one
 * forwarder: authentication, rate limit, authorization, then the service.
 */
export async function startGateway(config: GatewayConfig, log: Logger, lifecycle: Lifecycle): Promise<GatewayHandle> {
  const backends = createBackends(config, log);
  lifecycle.onStop("backend clients", () => backends.close());
  const authenticate = createAuthenticator(config);
  const limiter = new RateLimiter(config.RATE_LIMIT_PER_SECOND, config.RATE_LIMIT_BURST);
  const stopping = new AbortController();
  const forward = instrumented(
    createForwarder({
      backends,
      authenticate,
      limiter,
      directory: new OwnershipDirectory(backends),
      balances: new BalanceReads(backends.account, { callsInFlight: config.BALANCE_LOOKUPS_IN_FLIGHT, placeMs: config.BALANCE_LOOKUP_PLACE_MS }),
      options: { defaultDeadlineMs: config.GRPC_DEADLINE_MS, maxDeadlineMs: config.MAX_DEADLINE_MS },
    }),
    log,
  );
  // The answers' compressions, the same on the gateway's own gRPC path as through connect-es.
  const compression = { acceptCompression: [compressionGzip, compressionBrotli], compressMinBytes: 1024 };
  // connect-es hands these to its JSON serializers, which honour textDecoder, though the adapter's type leaves it out.
  const jsonOptions = {
    // A misspelt field is refused, not silently dropped: money moves only as asked.
    ignoreUnknownFields: false,
    textDecoder: exactIntegersTextDecoder(),
  };
  const handler = connectNodeAdapter({
    ...compression,
    routes: (router) => {
      registerRoutes(router, backends.services, forward);
      registerReflection(router, backends.services, { authenticate, limiter, stopping: stopping.signal });
      router.handlers.forEach((handler, i) => (router.handlers[i] = answerUndecodableAsInvalid(handler)));
    },
    readMaxBytes: config.MAX_REQUEST_BYTES,
    jsonOptions,
    // Whatever is not a gRPC, gRPC-Web or Connect call is a probe, or REST JSON transcoded from the protos.
    fallback: probes(backendGroups(config), log, restHandler(backends.services, forward, config.MAX_REQUEST_BYTES)),
  });
  const tls = config.TLS_CERT_FILE && config.TLS_KEY_FILE ? { cert: fs.readFileSync(config.TLS_CERT_FILE), key: fs.readFileSync(config.TLS_KEY_FILE) } : undefined;
  const served = withGrpcUnary(backends.services, forward, { maxRequestBytes: config.MAX_REQUEST_BYTES, ...compression }, handler);
  const traced = withCors(config.CORS_ORIGINS, withTracing(served));
  const server = tls ? createTlsServer(traced, tls) : createOnePortServer(traced);
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.HTTP_PORT, config.HTTP_HOST, () => resolve((server.address() as net.AddressInfo).port));
  });
  log.info({ port, tls: tls !== undefined }, "gateway listening");
  if (!config.AUTH_JWKS_URL && config.AUTH_HS256_SECRET === DEVELOPMENT_SECRET) log.warn("tokens are checked against the published development secret: anyone can sign one");
  lifecycle.onStop("gateway server", () => {
    // Reflection streams a tool left open end now; calls in flight are answered.
    stopping.abort();
    return server.shutdown(config.SHUTDOWN_GRACE_MS);
  });
  return { port, server };
}
