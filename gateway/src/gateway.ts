import type net from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Lifecycle } from "../../platform/lifecycle";
import type { Logger } from "../../platform/logger";
import { createBackends } from "./backends";
import type { GatewayConfig } from "./config";
import { createOnePortServer } from "./one-port";
import { backendTargets, probes } from "./probes";
import { restHandler } from "./rest";
import { registerRoutes } from "./routes";

export interface GatewayHandle {
  port: number;
  server: net.Server;
}

/**
 * The only public entry point: one port speaking gRPC (HTTP/2), gRPC-Web,
 * Connect (HTTP/1.1 and HTTP/2) and REST JSON, forwarding each public method
 * to its service.
 */
export async function startGateway(config: GatewayConfig, log: Logger, lifecycle: Lifecycle): Promise<GatewayHandle> {
  const backends = createBackends(config);
  lifecycle.onStop("backend clients", () => backends.forEach((b) => b.client.close()));
  const handler = connectNodeAdapter({
    routes: (router) => registerRoutes(router, backends, { defaultDeadlineMs: config.GRPC_DEADLINE_MS, maxDeadlineMs: config.MAX_DEADLINE_MS }),
    // Whatever is not a gRPC, gRPC-Web or Connect call is a probe, or REST JSON transcoded from the protos.
    fallback: probes(backendTargets(config), restHandler(backends, config.GRPC_DEADLINE_MS)),
  });
  const server = createOnePortServer(handler);
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.HTTP_PORT, config.HTTP_HOST, () => resolve((server.address() as net.AddressInfo).port));
  });
  log.info({ port }, "gateway listening");
  lifecycle.onStop("gateway server", () => server.shutdown(config.SHUTDOWN_GRACE_MS));
  return { port, server };
}
