import http from "node:http";
import { answersOk } from "./http-probe";

describe("answersOk", () => {
  // 10080 is where npm start puts the gateway with PORT_OFFSET=2000, and a port fetch refuses to call.
  it("probes any port, even one that fetch refuses", async () => {
    const server = http.createServer((_req, res) => res.writeHead(204).end());
    await new Promise<void>((resolve) => server.listen(10080, "127.0.0.1", resolve));
    try {
      await expect(fetch("http://127.0.0.1:10080/readyz")).rejects.toThrow();
      expect(await answersOk("http://127.0.0.1:10080/readyz", 1000)).toBe(true);
    } finally {
      server.close();
    }
  });

  it("is false for an error status and for a server that does not answer in time", async () => {
    // The slow route never answers: the probe must give up on its own.
    const server = http.createServer((req, res) => (req.url === "/slow" ? undefined : res.writeHead(503).end()));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      expect(await answersOk(`${base}/readyz`, 1000)).toBe(false);
      expect(await answersOk(`${base}/slow`, 200)).toBe(false);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
