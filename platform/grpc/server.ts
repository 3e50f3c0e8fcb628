import type { DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { databaseErrorCode } from "../db/errors";
import { trace } from "@opentelemetry/api";
import { DomainError, ErrorReason, reasonName } from "../errors";
import type { Logger } from "../logger";
import { rpcServerMetrics } from "../telemetry/rpc-metrics";
import { grpcServiceDefinition, grpcPath, MalformedMessage } from "./service-definition";
import { grpcCodeOf, toServiceError } from "./status";

/** What a handler knows of its call besides the request. */
export interface CallContext {
  /** When the caller stops waiting; pass it on to calls made on its behalf. */
  deadline: Date | undefined;
  metadata: grpc.Metadata;
  /** Aborted when the caller cancels or the deadline passes. */
  signal: AbortSignal;
}

export type UnaryHandler<S extends GenServiceMethods[string]> = (
  request: MessageShape<S["input"]>,
  context: CallContext,
) => Promise<MessageInitShape<S["output"]>>;

export type ServiceHandlers<T extends GenServiceMethods> = { [K in keyof T]: UnaryHandler<T[K]> };

/** The handlers a generated service needs, e.g. HandlersOf<typeof AccountService>. */
export type HandlersOf<S> = S extends GenService<infer T> ? ServiceHandlers<T> : never;

export interface GrpcServerOptions {
  host: string;
  port: number;
  log: Logger;
  /** Most bytes a request may carry. */
  maxReceiveBytes?: number;
}

/**
 * A grpc-js server for protobuf-es services, with grpc.health.v1, domain
 * errors mapped to status + reason in one place, RPC metrics, and a graceful
 * stop. Its calls' server spans come from the gRPC instrumentation.
 */
export class GrpcServer {
  readonly health = new HealthImplementation({ "": "NOT_SERVING" });
  private readonly server: grpc.Server;
  private readonly serviceNames: string[] = [];
  private readonly metrics = rpcServerMetrics("grpc");
  private boundPort = 0;

  constructor(private readonly options: GrpcServerOptions) {
    this.server = new grpc.Server({
      "grpc.max_receive_message_length": options.maxReceiveBytes ?? 8 * 1024 * 1024,
      "grpc.keepalive_permit_without_calls": 1,
    });
    this.health.addToServer(this.server);
  }

  get port(): number {
    return this.boundPort;
  }

  add<T extends GenServiceMethods>(service: GenService<T>, handlers: ServiceHandlers<T>): this {
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const method of (service as DescService).methods) {
      const handler = (handlers as Record<string, UnaryHandler<GenServiceMethods[string]>>)[method.localName];
      if (!handler) throw new Error(`no handler for ${grpcPath(method)}`);
      implementation[method.localName] = this.unary(grpcPath(method), handler);
    }
    this.server.addService(grpcServiceDefinition(service), implementation);
    this.serviceNames.push(service.typeName);
    this.health.setStatus(service.typeName, "NOT_SERVING");
    return this;
  }

  async start(): Promise<number> {
    this.boundPort = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${this.options.host}:${this.options.port}`, grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
    for (const name of ["", ...this.serviceNames]) this.health.setStatus(name, "SERVING");
    this.options.log.info({ port: this.boundPort, services: this.serviceNames }, "grpc server listening");
    return this.boundPort;
  }

  /** Reports NOT_SERVING, lets in-flight calls finish for up to graceMs, then closes what is left. */
  async stop(graceMs: number): Promise<void> {
    for (const name of ["", ...this.serviceNames]) this.health.setStatus(name, "NOT_SERVING");
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private unary(path: string, handler: UnaryHandler<GenServiceMethods[string]>): grpc.handleUnaryCall<unknown, unknown> {
    const { log } = this.options;
    const method = path.slice(1);
    const fail = (callback: grpc.sendUnaryData<unknown>, err: DomainError, startedAt: number) => {
      const code = grpcCodeOf(err.reason);
      const reason = reasonName(err.reason);
      trace.getActiveSpan()?.setAttribute("tally.error.reason", reason);
      this.metrics.record(method, startedAt, code, reason);
      log.debug({ method, code: grpc.status[code], reason, ms: Math.round(performance.now() - startedAt) }, "rpc answered");
      callback(toServiceError(err, code) as grpc.ServiceError);
    };
    return (call, callback) => {
      const startedAt = performance.now();
      if (call.request instanceof MalformedMessage) {
        fail(callback, new DomainError(ErrorReason.MALFORMED_REQUEST, `request is not a valid protobuf message: ${call.request.error.message}`), startedAt);
        return;
      }
      const controller = new AbortController();
      let answered = false;
      // grpc-js emits "cancelled" when the stream closes, after a normal answer too.
      call.on("cancelled", () => answered || controller.abort());
      const deadline = call.getDeadline();
      const context: CallContext = {
        deadline: deadline instanceof Date ? deadline : Number.isFinite(deadline) ? new Date(deadline) : undefined,
        metadata: call.metadata,
        signal: controller.signal,
      };
      handler(call.request as never, context).then(
        (response) => {
          answered = true;
          this.metrics.record(method, startedAt, grpc.status.OK);
          log.debug({ method, code: "OK", ms: Math.round(performance.now() - startedAt) }, "rpc answered");
          callback(null, response);
        },
        (err: unknown) => {
          answered = true;
          fail(callback, classify(err, path, log), startedAt);
        },
      );
    };
  }
}

/** Domain errors pass as they are; lost connections are retryable; anything else is internal and logged. */
function classify(err: unknown, path: string, log: Logger): DomainError {
  if (err instanceof DomainError) return err;
  const code = databaseErrorCode(err);
  // Only the code and the root message: a failed query's own message holds its SQL and every parameter.
  const cause = { code, message: rootMessage(err).slice(0, 500) };
  if (code && UNAVAILABLE_CODES.has(code)) {
    log.warn({ path, cause }, "dependency unavailable");
    return new DomainError(ErrorReason.UNAVAILABLE, "a dependency is unavailable; retry later");
  }
  log.error({ path, cause, stack: (err as Error).stack?.split("\n").slice(0, 6).join("\n") }, "unexpected error");
  return new DomainError(ErrorReason.INTERNAL, "internal error");
}

function rootMessage(err: unknown): string {
  let e = err as { cause?: unknown; message?: string };
  while (e.cause && typeof e.cause === "object") e = e.cause as typeof e;
  return String(e.message ?? e);
}

const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "57P01", // admin_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
]);
