import { Code } from "@connectrpc/connect";
import { createAsyncIterable, type UniversalHandler, type UniversalServerRequest, type UniversalServerResponse } from "@connectrpc/connect/protocol";

/**
 * connect-es answers a request it cannot decode — protobuf that does not
 * parse, a body that does not decompress — with INTERNAL, as though the
 * server had failed. The fault is the client's, and a client (or an alert on
 * server errors) must be able to tell, so the gateway answers those with
 * INVALID_ARGUMENT, the message kept, on every protocol: Connect (its JSON
 * error body), gRPC (its trailers) and gRPC-Web (its trailer frame).
 */
const UNDECODABLE = /^(parse binary: |decompression failed|received compressed envelope)/;

const isUndecodable = (code: string | null, message: string | null): boolean => code === String(Code.Internal) && UNDECODABLE.test(message ?? "");

export function answerUndecodableAsInvalid(handler: UniversalHandler): UniversalHandler {
  const wrapped = async (request: UniversalServerRequest): Promise<UniversalServerResponse> => {
    const response = await handler(request);
    // One handler serves every protocol, choosing by content type; so does this.
    const contentType = request.header.get("content-type") ?? "";
    if (contentType.startsWith("application/grpc-web")) return grpcWeb(response);
    if (contentType.startsWith("application/grpc")) return grpc(response);
    return connectUnary(response);
  };
  return Object.assign(wrapped, handler);
}

/** A Connect unary error is a JSON body with an HTTP status (only errors are read here, and they are small). */
async function connectUnary(response: UniversalServerResponse): Promise<UniversalServerResponse> {
  if (response.status !== 500 || !response.body) return response;
  const chunks: Uint8Array[] = [];
  for await (const chunk of response.body) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  let error: { code?: string; message?: string } = {};
  try {
    error = JSON.parse(bytes.toString("utf8")) as typeof error;
  } catch {
    // Not a Connect error body: passed on as it was.
  }
  if (error.code !== "internal" || !UNDECODABLE.test(error.message ?? "")) return { ...response, body: createAsyncIterable([bytes]) };
  const body = new TextEncoder().encode(JSON.stringify({ code: "invalid_argument", message: error.message }));
  const header = new Headers(response.header);
  header.set("content-length", String(body.length));
  return { ...response, status: 400, header, body: createAsyncIterable([body]) };
}

/** gRPC's status is in trailers, which the handler fills in as its body ends. */
function grpc(response: UniversalServerResponse): UniversalServerResponse {
  const trailer = response.trailer;
  if (!trailer) return response;
  const fix = () => {
    if (isUndecodable(trailer.get("grpc-status"), decodeURIComponent(trailer.get("grpc-message") ?? ""))) trailer.set("grpc-status", String(Code.InvalidArgument));
  };
  fix();
  return { ...response, body: atEnd(response.body, fix) };
}

/** gRPC-Web's status is in a trailer frame at the end of the body: flag 0x80, a length, then header lines. */
function grpcWeb(response: UniversalServerResponse): UniversalServerResponse {
  const body = response.body;
  if (!body) return response;
  return {
    ...response,
    body: {
      async *[Symbol.asyncIterator]() {
        for await (const chunk of body) yield rewriteTrailerFrame(chunk);
      },
    },
  };
}

function rewriteTrailerFrame(chunk: Uint8Array): Uint8Array {
  if (chunk.length < 5 || (chunk[0] & 0x80) === 0) return chunk;
  const length = new DataView(chunk.buffer, chunk.byteOffset + 1, 4).getUint32(0);
  if (chunk.length !== 5 + length) return chunk;
  const lines = new TextDecoder().decode(chunk.subarray(5)).split("\r\n");
  const field = (name: string) => lines.find((l) => l.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim() ?? null;
  if (!isUndecodable(field("grpc-status"), decodeURIComponent(field("grpc-message") ?? ""))) return chunk;
  const data = new TextEncoder().encode(lines.map((l) => (l.toLowerCase().startsWith("grpc-status:") ? `grpc-status: ${Code.InvalidArgument}` : l)).join("\r\n"));
  const frame = new Uint8Array(5 + data.length);
  frame[0] = chunk[0];
  new DataView(frame.buffer).setUint32(1, data.length);
  frame.set(data, 5);
  return frame;
}

/** The same body, with `after` run once it has been read to the end (or failed). */
function atEnd(body: UniversalServerResponse["body"], after: () => void): UniversalServerResponse["body"] {
  if (!body) return body;
  return {
    async *[Symbol.asyncIterator]() {
      try {
        yield* body;
      } finally {
        after();
      }
    },
  };
}
