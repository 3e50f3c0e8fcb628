import http2 from "node:http2";

/** A gRPC message envelope: a flags byte, the length, the bytes. */
export function frame(message: Uint8Array, flags = 0): Buffer {
  const bytes = Buffer.alloc(5 + message.length);
  bytes.writeUInt8(flags, 0);
  bytes.writeUInt32BE(message.length, 1);
  bytes.set(message, 5);
  return bytes;
}

export interface RawGrpcAnswer {
  contentType?: string;
  /** grpc-encoding: the compression the answer may use (its envelope's flag says whether it does). */
  encoding?: string;
  /** The response body: the answer's envelope, if any. */
  body: Buffer;
  status?: string;
  message?: string;
  /** grpc-status-details-bin: the error's google.rpc.Status, base64. */
  details?: string;
}

/** One gRPC call over HTTP/2 as bytes, so a test can send what no gRPC client would; its body `bodyAfterMs` after its headers. */
export function rawGrpcCall(base: string, path: string, body: Buffer, headers: Record<string, string>, bodyAfterMs = 0): Promise<RawGrpcAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(base);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
    const chunks: Buffer[] = [];
    const answer: RawGrpcAnswer = { body: Buffer.alloc(0) };
    // A trailers-only answer carries the status in its headers.
    const status = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] === undefined) return;
      answer.status = String(h["grpc-status"]);
      answer.message = decodeURIComponent(String(h["grpc-message"] ?? ""));
      answer.details = h["grpc-status-details-bin"] === undefined ? undefined : String(h["grpc-status-details-bin"]);
    };
    stream.on("response", (h) => {
      answer.contentType = String(h["content-type"]);
      answer.encoding = h["grpc-encoding"] === undefined ? undefined : String(h["grpc-encoding"]);
      status(h);
    });
    stream.on("trailers", status);
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", reject);
    stream.on("close", () => {
      session.close();
      resolve({ ...answer, body: Buffer.concat(chunks) });
    });
    if (bodyAfterMs === 0) stream.end(body);
    else setTimeout(() => stream.end(body), bodyAfterMs);
  });
}
