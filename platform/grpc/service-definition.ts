import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type DescService } from "@bufbuild/protobuf";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";

/** A request body that protobuf could not decode; the server answers it with INVALID_ARGUMENT. */
export class MalformedMessage {
  constructor(readonly error: Error) {}
}

const decoder = (schema: DescMessage) => (bytes: Buffer) => {
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    return new MalformedMessage(err as Error);
  }
};

// create() returns a message as it is and builds one from an init shape.
const encoder = (schema: DescMessage) => (message: unknown) =>
  Buffer.from(toBinary(schema, create(schema, message as never)));

export const grpcPath = (method: DescMethod): string => `/${method.parent.typeName}/${method.name}`;

/** The grpc-js definition of a protobuf-es service: paths and binary codecs per method. */
export function grpcServiceDefinition(service: DescService): ServiceDefinition {
  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    if (method.methodKind !== "unary") throw new Error(`${grpcPath(method)}: only unary methods are served`);
    definition[method.localName] = {
      path: grpcPath(method),
      requestStream: false,
      responseStream: false,
      requestSerialize: encoder(method.input),
      requestDeserialize: decoder(method.input),
      responseSerialize: encoder(method.output),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
    };
  }
  return definition as ServiceDefinition;
}
