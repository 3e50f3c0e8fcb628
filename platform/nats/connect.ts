import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { waitForDependency, withoutPassword } from "../dependency-wait";
import type { Logger } from "../logger";

export interface Broker {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  close(): Promise<void>;
}

/**
 * Connects to NATS, waiting up to `waitMs` for a server that is not up yet
 * (so a service may start before its broker), and reconnecting for ever after.
 */
export async function connectBroker(url: string, name: string, log: Logger, waitMs = 60_000): Promise<Broker> {
  const servers = url.split(",");
  const nc = await waitForDependency(() => connect({ servers, name, maxReconnectAttempts: -1, reconnectTimeWait: 500, timeout: 2000 }), {
    what: `NATS at ${servers.map(withoutPassword).join(",")}`,
    timeoutMs: waitMs,
    log,
  });
  (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect" || status.type === "reconnect") log.warn({ nats: status.type }, "nats connection");
    }
  })().catch(() => {});
  const jsm = await jetstreamManager(nc);
  return {
    nc,
    js: jetstream(nc),
    jsm,
    close: () => nc.drain(),
  };
}
