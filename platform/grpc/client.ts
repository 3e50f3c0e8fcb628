import type { DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";
import { grpcPath, grpcServiceDefinition } from "./service-definition";
import { fromServiceError } from "./status";
import { channelTarget } from "./target";

export interface CallOptions {
  /** Absolute deadline, e.g. the incoming call's; otherwise now + the client's default. */
  deadline?: Date;
  timeoutMs?: number;
  metadata?: grpc.Metadata;
}

export type ServiceClient<T extends GenServiceMethods> = {
  [K in keyof T]: (request: MessageInitShape<T[K]["input"]>, options?: CallOptions) => Promise<MessageShape<T[K]["output"]>>;
} & { close(): void };

/** The client of a generated service, e.g. ClientOf<typeof AccountService>. */
export type ClientOf<S> = S extends GenService<infer T> ? ServiceClient<T> : never;

export interface ClientOptions {
  /** Deadline of every call that names none. */
  defaultTimeoutMs: number;
  /** Methods (by their client name, e.g. "getAccount") safe to retry on UNAVAILABLE. */
  retryableMethods?: string[];
}

/**
 * A promise-based grpc-js client for a protobuf-es service. Every call has a
 * deadline; failures reject with a RemoteError carrying the peer's reason.
 * The target is one address or a comma-separated list of replicas' addresses;
 * calls are balanced round-robin over every address (see channelTarget).
 */
export function createServiceClient<T extends GenServiceMethods>(
  service: GenService<T>,
  target: string,
  options: ClientOptions,
): ServiceClient<T> {
  const desc = service as DescService;
  const retryable = (options.retryableMethods ?? []).map((localName) => {
    const method = desc.methods.find((m) => m.localName === localName);
    if (!method) throw new Error(`${desc.typeName} has no method ${localName}`);
    return method.name;
  });
  const serviceConfig = {
    loadBalancingConfig: [{ round_robin: {} }],
    methodConfig: retryable.map((name) => ({
      name: [{ service: desc.typeName, method: name }],
      retryPolicy: {
        maxAttempts: 4,
        initialBackoff: "0.05s",
        maxBackoff: "1s",
        backoffMultiplier: 2,
        retryableStatusCodes: ["UNAVAILABLE"],
      },
    })),
  };
  const channel = new grpc.Client(channelTarget(target), grpc.credentials.createInsecure(), {
    "grpc.service_config": JSON.stringify(serviceConfig),
    "grpc.keepalive_time_ms": 30_000,
    // A replica that went away (restarted, crashed) is tried again within a second, where grpc-js
    // would back off up to two minutes: in a rolling restart the next replica stops a few seconds
    // after the last came back, and its callers must have reached the returned one by then.
    "grpc.initial_reconnect_backoff_ms": 250,
    "grpc.max_reconnect_backoff_ms": 1_000,
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
  });
  const definition = grpcServiceDefinition(desc);
  const client: Record<string, unknown> = { close: () => channel.close() };
  for (const method of desc.methods) {
    const { requestSerialize, responseDeserialize } = definition[method.localName];
    client[method.localName] = (request: unknown, call: CallOptions = {}) =>
      new Promise((resolve, reject) => {
        const deadline = call.deadline ?? new Date(Date.now() + (call.timeoutMs ?? options.defaultTimeoutMs));
        channel.makeUnaryRequest(
          grpcPath(method),
          requestSerialize,
          responseDeserialize,
          request,
          call.metadata ?? new grpc.Metadata(),
          { deadline },
          (err, response) => (err ? reject(fromServiceError(err)) : resolve(response)),
        );
      });
  }
  return client as ServiceClient<T>;
}
