import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

export type GatewayServer = net.Server & { shutdown(graceMs: number): Promise<void> };

const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
// A connection that says nothing for this long is closed before any server sees it.
const FIRST_BYTES_TIMEOUT_MS = 10_000;

type ProtocolServer = http.Server | http2.Http2Server | http2.Http2SecureServer;
type AnyResponse = http.ServerResponse | http2.Http2ServerResponse;

/**
 * Adds shutdown(graceMs): stop accepting connections; on open ones, answer
 * what is in flight and ask clients to go elsewhere for the rest (GOAWAY on
 * HTTP/2, `Connection: close` on HTTP/1.1 keep-alives, idle ones closed at
 * once); after graceMs, close whatever is still open.
 */
function withShutdown(server: net.Server, protocolServers: ProtocolServer[]): GatewayServer {
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.Http2Session>();
  // HTTP/1.1 responses not yet sent: at shutdown they are told to close their connection.
  const pending = new Set<http.ServerResponse>();
  let closing = false;
  server.on("connection", (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  const closeAfter = (res: http.ServerResponse) => {
    if (!res.headersSent) res.setHeader("connection", "close");
  };
  for (const protocol of protocolServers) {
    protocol.on("session", (session: http2.Http2Session) => {
      sessions.add(session);
      session.once("close", () => sessions.delete(session));
      if (closing) session.close();
    });
    protocol.on("request", (req: http.IncomingMessage | http2.Http2ServerRequest, res: AnyResponse) => {
      if (req.httpVersionMajor !== 1) return;
      const h1 = res as http.ServerResponse;
      if (closing) return closeAfter(h1);
      pending.add(h1);
      h1.once("close", () => pending.delete(h1));
    });
  }
  const closeIdle = () => protocolServers.forEach((p) => (p as http.Server).closeIdleConnections?.());
  const shutdown = (graceMs: number) =>
    new Promise<void>((resolve) => {
      closing = true;
      sessions.forEach((session) => session.close());
      pending.forEach(closeAfter);
      closeIdle();
      // A keep-alive answered with headers already sent goes idle later: close those as they do.
      const idle = setInterval(closeIdle, 100);
      const timer = setTimeout(() => sockets.forEach((s) => s.destroy()), graceMs);
      server.close(() => {
        clearTimeout(timer);
        clearInterval(idle);
        resolve();
      });
    });
  return Object.assign(server, { shutdown });
}

/**
 * One cleartext port for HTTP/1.1 and HTTP/2 (prior knowledge, as gRPC uses):
 * the first bytes of each connection say which, and it is handed to an
 * HTTP/2 or an HTTP/1.1 server that share one handler.
 */
export function createOnePortServer(handler: Handler): GatewayServer {
  const h1 = http.createServer(handler as http.RequestListener);
  const h2 = http2.createServer({}, handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void);
  const server = net.createServer((socket) => {
    // Until a server takes the connection, its errors (a reset) and its silence are handled here.
    const drop = () => socket.destroy();
    socket.on("error", drop);
    socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, drop);
    socket.once("readable", () => {
      socket.off("error", drop);
      socket.setTimeout(0);
      socket.off("timeout", drop);
      const head: Buffer | null = socket.read(HTTP2_PREFACE.length) ?? socket.read();
      if (head === null) {
        socket.destroy();
        return;
      }
      socket.unshift(head);
      const isHttp2 = head.length >= HTTP2_PREFACE.length ? head.subarray(0, HTTP2_PREFACE.length).equals(HTTP2_PREFACE) : HTTP2_PREFACE.subarray(0, head.length).equals(head);
      (isHttp2 ? h2 : h1).emit("connection", socket);
    });
  });
  return withShutdown(server, [h1, h2]);
}

/** The same over TLS: ALPN picks HTTP/2 ("h2") or HTTP/1.1, so gRPC, browsers and curl share the port. */
export function createTlsServer(handler: Handler, credentials: { cert: Buffer; key: Buffer }): GatewayServer {
  const server = http2.createSecureServer({ ...credentials, allowHTTP1: true }, handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void);
  return withShutdown(server, [server]);
}
