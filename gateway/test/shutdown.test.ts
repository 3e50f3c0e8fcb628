import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { createOnePortServer, type GatewayServer } from "../src/one-port";

/**
 * The gateway's port stopping gracefully: requests in flight are answered,
 * clients on kept-alive connections are told to go elsewhere (Connection:
 * close, or GOAWAY), and the port closes as soon as they have gone, not when
 * the grace period ends.
 */
const GRACE_MS = 60_000;
let server: GatewayServer;
let port: number;
let release: () => void;
let started: () => void;
let requestStarted: Promise<void>;

beforeEach(async () => {
  const gate = new Promise<void>((r) => (release = r));
  requestStarted = new Promise<void>((r) => (started = r));
  // "/slow" waits until the test releases it; anything else answers at once.
  server = createOnePortServer((req, res) => {
    const answer = () => res.end("done");
    if (req.url !== "/slow") return answer();
    started();
    void gate.then(answer);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
});

afterEach(() => {
  release();
  server.close();
});

function get(agent: http.Agent, path: string): Promise<{ body: string; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path, agent }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve({ body, connection: res.headers.connection }));
      })
      .on("error", reject);
  });
}

it("answers an HTTP/1.1 request in flight with Connection: close, closes idle keep-alives, and closes long before the grace period", async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  try {
    // One kept-alive connection that is idle when shutdown begins, one with a request in flight.
    expect((await get(agent, "/fast")).connection).toBe("keep-alive");
    const inFlight = get(agent, "/slow");
    await requestStarted;
    const stopped = server.shutdown(GRACE_MS);
    release();
    expect(await inFlight).toEqual({ body: "done", connection: "close" });
    await stopped;
  } finally {
    agent.destroy();
  }
}, 10_000);

it("sends GOAWAY to an HTTP/2 client and lets its stream in flight finish", async () => {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  const goaway = new Promise<void>((r) => session.once("goaway", () => r()));
  try {
    const stream = session.request({ ":path": "/slow" });
    let body = "";
    stream.on("data", (c: Buffer) => (body += c.toString()));
    const ended = new Promise<void>((r) => stream.on("end", () => r()));
    await requestStarted;
    const stopped = server.shutdown(GRACE_MS);
    await goaway;
    release();
    await ended;
    expect(body).toBe("done");
    await stopped;
  } finally {
    session.destroy();
  }
}, 10_000);
