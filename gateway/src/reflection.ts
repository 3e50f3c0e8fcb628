import { clone, create, createFileRegistry, fromBinary, toBinary, type DescFile, type DescMessage, type DescService, type Message } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb";
import { isPublic } from "./exposure";

type Answer = v1.ServerReflectionResponse["messageResponse"];

/**
 * grpc.reflection.v1alpha, which older tools speak: the same messages, field for field, as v1 in
 * another package, so its descriptor is v1's renamed, and the bytes of one read as the other.
 */
function v1alphaService(): DescService {
  const rename = (name: string) => name.replace(/^\.grpc\.reflection\.v1\./, ".grpc.reflection.v1alpha.");
  const file = clone(FileDescriptorProtoSchema, v1.file_grpc_reflection_v1_reflection.proto);
  file.name = "grpc/reflection/v1alpha/reflection.proto";
  file.package = "grpc.reflection.v1alpha";
  for (const message of file.messageType) for (const field of message.field) field.typeName = rename(field.typeName);
  for (const method of file.service[0].method) [method.inputType, method.outputType] = [rename(method.inputType), rename(method.outputType)];
  return createFileRegistry(file, () => undefined).getService("grpc.reflection.v1alpha.ServerReflection")!;
}

const v1alpha = v1alphaService();

const REFLECTION = [v1.ServerReflection.typeName, v1alpha.typeName];

const notFound = (what: string): Answer => ({ case: "errorResponse", value: create(v1.ErrorResponseSchema, { errorCode: Code.NotFound, errorMessage: `${what} not found` }) });

/**
 * The public surface as gRPC server reflection tells it: the files of the public services, each
 * service with its public methods only, and every file they import.
 */
class PublicSurface {
  /** Each file serialized (a FileDescriptorProto), by its name. */
  private readonly files = new Map<string, Uint8Array>();
  /** Each file's name, then every file it imports, directly or not. */
  private readonly closure = new Map<string, string[]>();
  /** The file that declares each symbol: services, methods, messages, enums, extensions. */
  private readonly symbols = new Map<string, string>();
  /** The file that declares each extension, by `<extended message>#<number>`. */
  private readonly extensions = new Map<string, string>();
  readonly services: string[];

  constructor(services: DescService[]) {
    const reachable = services.filter((s) => s.methods.some(isPublic));
    this.services = reachable.map((s) => s.typeName);
    for (const service of reachable) this.add(service.file);
  }

  private add(file: DescFile): string[] {
    const name = file.proto.name;
    const known = this.closure.get(name);
    if (known) return known;
    const closure = [name];
    this.closure.set(name, closure);
    const services = file.services.filter((s) => this.services.includes(s.typeName));
    // What stays inside the system is not described outside it.
    const proto = clone(FileDescriptorProtoSchema, file.proto);
    proto.service = proto.service.flatMap((s) => {
      const described = services.find((d) => d.name === s.name);
      return described ? [{ ...s, method: s.method.filter((m) => isPublic(described.methods.find((d) => d.name === m.name)!)) }] : [];
    });
    this.files.set(name, toBinary(FileDescriptorProtoSchema, proto));
    for (const dependency of file.dependencies) for (const n of this.add(dependency)) if (!closure.includes(n)) closure.push(n);
    for (const service of services) {
      this.symbols.set(service.typeName, name);
      for (const method of service.methods.filter(isPublic)) this.symbols.set(`${service.typeName}.${method.name}`, name);
    }
    const addMessages = (messages: DescMessage[]): void => {
      for (const message of messages) {
        this.symbols.set(message.typeName, name);
        for (const e of message.nestedEnums) this.symbols.set(e.typeName, name);
        addMessages(message.nestedMessages);
      }
    };
    addMessages(file.messages);
    for (const e of file.enums) this.symbols.set(e.typeName, name);
    for (const extension of file.extensions) {
      this.symbols.set(extension.typeName, name);
      this.extensions.set(`${extension.extendee.typeName}#${extension.number}`, name);
    }
    return closure;
  }

  /** A file and every file it imports, as gRPC's own servers send them. */
  private filesOf(name: string | undefined, what: string): Answer {
    const closure = name === undefined ? undefined : this.closure.get(name);
    if (!closure) return notFound(what);
    return { case: "fileDescriptorResponse", value: create(v1.FileDescriptorResponseSchema, { fileDescriptorProto: closure.map((n) => this.files.get(n)!) }) };
  }

  answer(request: v1.ServerReflectionRequest): v1.ServerReflectionResponse {
    return create(v1.ServerReflectionResponseSchema, { validHost: request.host, originalRequest: request, messageResponse: this.answerTo(request.messageRequest) });
  }

  private answerTo(asked: v1.ServerReflectionRequest["messageRequest"]): Answer {
    switch (asked.case) {
      case "listServices":
        return { case: "listServicesResponse", value: create(v1.ListServiceResponseSchema, { service: [...this.services, ...REFLECTION].map((name) => ({ name })) }) };
      case "fileByFilename":
        return this.filesOf(asked.value, `file ${asked.value}`);
      case "fileContainingSymbol":
        return this.filesOf(this.symbols.get(asked.value.replace(/^\./, "")), `symbol ${asked.value}`);
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = asked.value;
        return this.filesOf(this.extensions.get(`${containingType}#${extensionNumber}`), `extension ${extensionNumber} of ${containingType}`);
      }
      case "allExtensionNumbersOfType": {
        const prefix = `${asked.value}#`;
        const numbers = [...this.extensions.keys()].filter((k) => k.startsWith(prefix)).map((k) => Number(k.slice(prefix.length)));
        if (numbers.length === 0 && !this.symbols.has(asked.value)) return notFound(`type ${asked.value}`);
        return { case: "allExtensionNumbersResponse", value: create(v1.ExtensionNumberResponseSchema, { baseTypeName: asked.value, extensionNumber: numbers }) };
      }
      default:
        return { case: "errorResponse", value: create(v1.ErrorResponseSchema, { errorCode: Code.InvalidArgument, errorMessage: "the request asks for nothing" }) };
    }
  }
}

/**
 * Serves gRPC server reflection (grpc.reflection.v1, and v1alpha for older tools) of the public
 * surface, so that grpcurl and buf curl need no copy of the protos. Like the published protos it
 * is open to all, and it tells nothing of what stays inside.
 */
export function registerReflection(router: ConnectRouter, services: DescService[]): void {
  const surface = new PublicSurface(services);
  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) yield surface.answer(request);
    },
  });
  const [alphaRequest, alphaResponse] = [v1alpha.methods[0].input, v1alpha.methods[0].output];
  router.service(v1alpha, {
    async *serverReflectionInfo(requests: AsyncIterable<Message>) {
      for await (const request of requests) {
        const answer = surface.answer(fromBinary(v1.ServerReflectionRequestSchema, toBinary(alphaRequest, request)));
        yield fromBinary(alphaResponse, toBinary(v1.ServerReflectionResponseSchema, answer));
      }
    },
  } as never);
}
