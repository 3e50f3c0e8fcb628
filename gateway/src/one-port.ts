import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * One cleartext port for HTTP/1.1 and HTTP/2 (prior knowledge, as gRPC uses):
 * the first bytes of each connection say which, and it is handed to an
 * HTTP/2 or an HTTP/1.1 server that share one handler.
 */
export function createOnePortServer(handler: Handler): net.Server & { shutdown(graceMs: number): Promise<void> } {
  const h1 = http.createServer(handler as http.RequestListener);
  const h2 = http2.createServer({}, handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.once("readable", () => {
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
  /** Stops accepting, lets open connections finish for up to graceMs, then closes what is left (idle keep-alives). */
  const shutdown = (graceMs: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        for (const socket of sockets) socket.destroy();
      }, graceMs);
      h1.closeIdleConnections();
      server.close(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  return Object.assign(server, { shutdown });
}
