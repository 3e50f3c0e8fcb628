import { clone, create, createFileRegistry, fromBinary, toBinary, type DescFile, type DescMessage, type DescMethod, type DescService, type Message } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb";
import type { Authenticate } from "./auth/authenticate";
import { toConnectError } from "./errors";
import { isPublic } from "./exposure";
import type { RateLimiter } from "./rate-limit";

type Answer = v1.ServerReflectionResponse["messageResponse"];

// A tool asks a few dozen questions over one stream; more is someone making the gateway work.
const REQUESTS_PER_STREAM = 100;
// A question is a name: these bounds keep what the answer echoes back small.
const REQUEST_BYTES = 16_384;
const NAME_IN_ERROR = 200;

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
const REFLECTION = [v1.ServerReflection, v1alpha];

const error = (code: Code, message: string): Answer => ({ case: "errorResponse", value: create(v1.ErrorResponseSchema, { errorCode: code, errorMessage: message }) });
const notFound = (what: string): Answer => error(Code.NotFound, `${what.slice(0, NAME_IN_ERROR)} not found`);

/**
 * The public surface as gRPC server reflection tells it: the files of the public services and of
 * reflection itself, each service with the methods a client may call, and every file they import.
 * (Messages only internal methods use, declared in the same files, are described with them.)
 */
class PublicSurface {
  /** Each file serialized (a FileDescriptorProto), by its name. */
  private readonly files = new Map<string, Uint8Array>();
  /** Each file's name, then every file it imports, directly or not. */
  private readonly closure = new Map<string, string[]>();
  /** The file that declares each symbol: services, methods, messages, fields, enums, their values, extensions. */
  private readonly symbols = new Map<string, string>();
  /** The file that declares each extension, by `<extended message>#<number>`. */
  private readonly extensions = new Map<string, string>();
  readonly services: DescService[];

  constructor(services: DescService[]) {
    this.services = [...services.filter((s) => s.methods.some(isPublic)), ...REFLECTION];
    for (const service of this.services) this.add(service.file);
  }

  /** What a client may call: every public method, and reflection. */
  private callable(method: DescMethod): boolean {
    return isPublic(method) || REFLECTION.includes(method.parent);
  }

  private add(file: DescFile): string[] {
    const name = file.proto.name;
    const known = this.closure.get(name);
    if (known) return known;
    const closure = [name];
    this.closure.set(name, closure);
    const services = file.services.filter((s) => this.services.includes(s));
    // What stays inside the system is not described outside it.
    const proto = clone(FileDescriptorProtoSchema, file.proto);
    proto.service = proto.service.flatMap((s) => {
      const described = services.find((d) => d.name === s.name);
      return described ? [{ ...s, method: s.method.filter((m) => this.callable(described.methods.find((d) => d.name === m.name)!)) }] : [];
    });
    this.files.set(name, toBinary(FileDescriptorProtoSchema, proto));
    for (const dependency of file.dependencies) for (const n of this.add(dependency)) if (!closure.includes(n)) closure.push(n);
    for (const service of services) {
      this.symbols.set(service.typeName, name);
      for (const method of service.methods.filter((m) => this.callable(m))) this.symbols.set(`${service.typeName}.${method.name}`, name);
    }
    const addEnum = (e: DescFile["enums"][number]) => {
      this.symbols.set(e.typeName, name);
      // An enum's values are named in the scope around it, as C++ does.
      const scope = e.typeName.slice(0, e.typeName.lastIndexOf("."));
      for (const value of e.values) this.symbols.set(`${scope}.${value.name}`, name);
    };
    const addMessages = (messages: DescMessage[]): void => {
      for (const message of messages) {
        this.symbols.set(message.typeName, name);
        for (const field of message.fields) this.symbols.set(`${message.typeName}.${field.name}`, name);
        message.nestedEnums.forEach(addEnum);
        addMessages(message.nestedMessages);
      }
    };
    addMessages(file.messages);
    file.enums.forEach(addEnum);
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
    const named = (value: string) => value.replace(/^\./, "");
    switch (asked.case) {
      case "listServices":
        return { case: "listServicesResponse", value: create(v1.ListServiceResponseSchema, { service: this.services.map((s) => ({ name: s.typeName })) }) };
      case "fileByFilename":
        return this.filesOf(asked.value, `file ${asked.value}`);
      case "fileContainingSymbol":
        return this.filesOf(this.symbols.get(named(asked.value)), `symbol ${asked.value}`);
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = asked.value;
        return this.filesOf(this.extensions.get(`${named(containingType)}#${extensionNumber}`), `extension ${extensionNumber} of ${containingType}`);
      }
      case "allExtensionNumbersOfType": {
        const type = named(asked.value);
        if (!this.symbols.has(type)) return notFound(`type ${asked.value}`);
        const numbers = [...this.extensions.keys()].filter((k) => k.startsWith(`${type}#`)).map((k) => Number(k.slice(type.length + 1)));
        return { case: "allExtensionNumbersResponse", value: create(v1.ExtensionNumberResponseSchema, { baseTypeName: type, extensionNumber: numbers }) };
      }
      default:
        return error(Code.InvalidArgument, "the request asks for nothing");
    }
  }
}

/** The requests of a stream until the client ends it, or the gateway stops: then the stream ends, answered. */
async function* untilStopped<T>(requests: AsyncIterable<T>, stopping: AbortSignal): AsyncGenerator<T> {
  const iterator = requests[Symbol.asyncIterator]();
  const stopped = new Promise<IteratorResult<T>>((resolve) => {
    if (stopping.aborted) resolve({ done: true, value: undefined });
    stopping.addEventListener("abort", () => resolve({ done: true, value: undefined }), { once: true });
  });
  for (;;) {
    const next = await Promise.race([iterator.next(), stopped]);
    if (next.done) return;
    yield next.value;
  }
}

export interface ReflectionAccess {
  authenticate: Authenticate;
  limiter: RateLimiter;
  /** Aborted when the gateway stops: open streams end then, rather than hold the drain to its grace period. */
  stopping: AbortSignal;
}

/**
 * Serves gRPC server reflection (grpc.reflection.v1, and v1alpha for older tools) of the public
 * surface, so that grpcurl and buf curl need no copy of the protos. A caller needs a token, as for
 * any call (the tools send the same headers), and each question spends one of its rate-limit
 * tokens; a stream answers at most REQUESTS_PER_STREAM questions, uncompressed.
 */
export function registerReflection(router: ConnectRouter, services: DescService[], access: ReflectionAccess): void {
  const surface = new PublicSurface(services);
  async function* serve(requests: AsyncIterable<v1.ServerReflectionRequest>, ctx: HandlerContext) {
    try {
      const principal = await access.authenticate(ctx.requestHeader.get("authorization") ?? undefined);
      let asked = 0;
      for await (const request of untilStopped(requests, access.stopping)) {
        if (++asked > REQUESTS_PER_STREAM) throw new ConnectError(`at most ${REQUESTS_PER_STREAM} questions per stream: open another`, Code.ResourceExhausted);
        access.limiter.take(principal.subject);
        yield surface.answer(request);
      }
    } catch (err) {
      throw toConnectError(err);
    }
  }
  const options = { readMaxBytes: REQUEST_BYTES, acceptCompression: [] };
  router.service(v1.ServerReflection, { serverReflectionInfo: serve }, options);
  const [alphaRequest, alphaResponse] = [v1alpha.methods[0].input, v1alpha.methods[0].output];
  async function* asV1(requests: AsyncIterable<Message>) {
    for await (const request of requests) yield fromBinary(v1.ServerReflectionRequestSchema, toBinary(alphaRequest, request));
  }
  const serveV1alpha = async function* (requests: AsyncIterable<Message>, ctx: HandlerContext) {
    for await (const answer of serve(asV1(requests), ctx)) yield fromBinary(alphaResponse, toBinary(v1.ServerReflectionResponseSchema, answer));
  };
  router.service(v1alpha, { serverReflectionInfo: serveV1alpha } as never, options);
}
