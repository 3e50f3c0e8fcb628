import type http from "node:http";
import http2 from "node:http2";
import { fromBinary, toBinary, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { compressionNegotiate, encodeEnvelope, envelopeCompress, type Compression } from "@connectrpc/connect/protocol";
import { headerAcceptEncoding, headerEncoding, parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { toConnectError } from "./errors";
import { publicMethods } from "./exposure";
import type { Forward } from "./forward";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;
type Handler = (req: Request, res: Response) => void;

export interface GrpcUnaryOptions {
  maxRequestBytes: number;
  /** Compressions an answer may use, as connect-es is given them: the first in the client's grpc-accept-encoding that is here is used. */
  acceptCompression: Compression[];
  /** Smaller answers go uncompressed. */
  compressMinBytes: number;
}

// Unary gRPC with binary protobuf: what gRPC clients send. JSON, or a compressed request, goes to connect-es.
const GRPC_PROTO = /^application\/grpc(\+proto)?$/i;
const HEADER_BYTES = 5;
const COMPRESSED = 0x01;

/**
 * Serves gRPC calls (HTTP/2, binary protobuf, uncompressed) itself and hands
 * every other request to `next` (connect-es, which serves the rest). The
 * answer is the same either way — the same forwarder, the same status, message
 * and details in the trailers — but connect-es spends about 0.5 ms of CPU on
 * each call on this project's machines, eight times what HTTP/2 itself costs,
 * and gRPC is how services and most clients call.
 */
export function withGrpcUnary(services: DescService[], forward: Forward, options: GrpcUnaryOptions, next: Handler): Handler {
  const methods = new Map(services.flatMap((s) => publicMethods(s)).map((m) => [`/${m.parent.typeName}/${m.name}`, m]));
  return (req, res) => {
    const method = req.httpVersionMajor === 2 && req.method === "POST" ? methods.get(req.url ?? "") : undefined;
    const encoding = req.headers["grpc-encoding"];
    if (!method || !GRPC_PROTO.test(req.headers["content-type"] ?? "") || (encoding !== undefined && encoding !== "identity")) return next(req, res);
    // Whatever fails in writing the answer (the stream gone meanwhile) ends that stream, never the process.
    serve(method, req, res, forward, options).catch(() => (res as http2.Http2ServerResponse).stream.destroy());
  };
}

/**
 * One call: read, decode, forward, answer with the message (compressed as the client accepts, as
 * connect-es would) or the error, the status in trailers.
 */
async function serve(method: DescMethod, req: Request, res: Response, forward: Forward, options: GrpcUnaryOptions): Promise<void> {
  const { maxRequestBytes, acceptCompression, compressMinBytes } = options;
  const compression = compressionNegotiate(acceptCompression, null, header(req, headerAcceptEncoding.toLowerCase()) ?? null, headerAcceptEncoding).response;
  let frame: Uint8Array | undefined;
  let error: ConnectError | undefined;
  try {
    const arrived = Date.now();
    const timeout = parseTimeout(header(req, "grpc-timeout") ?? null, Number.MAX_SAFE_INTEGER);
    if (timeout.error) throw timeout.error;
    const request = single(method, await readBody(req, maxRequestBytes + HEADER_BYTES));
    // The deadline counts from the call's arrival: a slow upload spends some of it.
    const timeoutMs = timeout.timeoutMs === undefined ? undefined : Math.max(0, timeout.timeoutMs - (Date.now() - arrived));
    const answer = await forward(method, request, { header: (name) => header(req, name), timeoutMs, protocol: "grpc" });
    const { flags, data } = await envelopeCompress({ flags: 0, data: toBinary(method.output, answer) }, compression, compressMinBytes);
    frame = encodeEnvelope(flags, data);
  } catch (err) {
    error = toConnectError(err);
  }
  const response = res as http2.Http2ServerResponse;
  if (response.stream.destroyed) return; // the client went away
  response.writeHead(200, { "content-type": "application/grpc+proto", ...(compression ? { [headerEncoding.toLowerCase()]: compression.name } : {}) });
  response.addTrailers(Object.fromEntries(setTrailerStatus(new Headers(), error)));
  if (frame) response.end(frame);
  else response.end();
  // Answered before the upload ended (refused as too large, say): the client is asked to stop sending
  // the rest, which is of no use (RST_STREAM NO_ERROR, as HTTP/2 provides), after the trailers that
  // carry the status. Node hands them to HTTP/2 on 'wantTrailers', in an immediate queued before this
  // one, and sends what it holds for a stream before resetting it.
  if (!req.complete) {
    response.stream.once("wantTrailers", () =>
      setImmediate(() => {
        if (!req.complete) response.stream.close(http2.constants.NGHTTP2_NO_ERROR);
      }),
    );
  }
}

function header(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
}

/** The request body, refused once it passes the limit. */
function readBody(req: Request, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners("data");
        req.resume();
        reject(new ConnectError(`message size is larger than configured readMaxBytes ${limit - HEADER_BYTES}`, Code.ResourceExhausted));
      } else chunks.push(chunk);
    });
    req.once("end", () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.once("error", reject);
    // The client went away before its request ended. (Every stream closes; the error is built only for those cut short.)
    req.once("close", () => {
      if (!req.readableEnded) reject(new ConnectError("the client closed the stream", Code.Canceled));
    });
  });
}

/**
 * The one message of a unary call, decoded, as connect-es reads it: a flags byte, a length, the
 * bytes; then what follows. No message or a second whole one is UNIMPLEMENTED (a cardinality
 * violation, in gRPC's words and connect-es's); a cut envelope is INVALID_ARGUMENT; flags other
 * than the compressed bit are passed over.
 */
function single(method: DescMethod, body: Buffer) {
  if (body.length === 0) throw new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
  const [first, rest] = envelope(body);
  if (first[0] & COMPRESSED) throw new ConnectError("received compressed envelope, but the request names no grpc-encoding", Code.InvalidArgument);
  const message = decode(method, first.subarray(HEADER_BYTES));
  if (rest.length > 0) {
    envelope(rest);
    throw new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented);
  }
  return message;
}

/** The first enveloped message of `body`, and the bytes after it; a cut one is refused. */
function envelope(body: Buffer): [Buffer, Buffer] {
  const end = body.length < HEADER_BYTES ? Infinity : HEADER_BYTES + body.readUInt32BE(1);
  if (body.length < end) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  return [body.subarray(0, end), body.subarray(end)];
}

/** protobuf that does not parse is the client's fault, in connect-es's words. */
function decode(method: DescMethod, bytes: Uint8Array) {
  try {
    return fromBinary(method.input, bytes);
  } catch (err) {
    throw new ConnectError(`parse binary: ${err instanceof Error ? err.message : String(err)}`, Code.InvalidArgument);
  }
}
