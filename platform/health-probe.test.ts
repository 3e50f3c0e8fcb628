import http from "node:http";
import { GrpcServer } from "./grpc/server";
import { freePort, testLogger } from "../test/support/infra";
import { runTs } from "../test/support/run-ts";

// The command the containers' health checks run (docker-compose.yml), as a process.
const probe = (...args: string[]) => runTs("platform/health-probe.ts", args);

describe("health probe", () => {
  it("is healthy while a gRPC server reports SERVING, and not once it stops", async () => {
    const server = new GrpcServer({ host: "127.0.0.1", port: 0, log: testLogger() });
    const port = await server.start();
    expect((await probe("grpc", `127.0.0.1:${port}`)).code).toBe(0);
    await server.stop(0);
    expect((await probe("grpc", `127.0.0.1:${port}`)).code).toBe(1);
  });

  it("is healthy when an HTTP endpoint answers 2xx, and not otherwise", async () => {
    let status = 200;
    const server = http.createServer((_req, res) => res.writeHead(status).end());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/readyz`;
    try {
      expect((await probe("http", url)).code).toBe(0);
      status = 503;
      expect((await probe("http", url)).code).toBe(1);
    } finally {
      server.close();
    }
    expect((await probe("http", `http://127.0.0.1:${await freePort()}/readyz`)).code).toBe(1);
  });

  it("says how to call it when called wrongly", async () => {
    expect(await probe("tcp")).toMatchObject({ code: 2, stderr: expect.stringContaining("usage: health-probe") });
  });
});
