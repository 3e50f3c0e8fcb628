import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { AuthorizationError, connect, UserAuthenticationExpiredError, type NatsConnection } from "@nats-io/transport-node";
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
  const options = {
    ...serversAndCredentials(servers),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    timeout: 2000,
    // Otherwise every publish and request captures a stack trace up front, in case it fails:
    // a few percent of a service's CPU, for a caller's frame the logs do not need.
    noAsyncTraces: true,
  };
  const nc = await waitForDependency(() => connect(options), {
    what: `NATS at ${servers.map(withoutPassword).join(",")}`,
    timeoutMs: waitMs,
    log,
    // Refused credentials will not be accepted by waiting.
    transient: (err) => !(err instanceof AuthorizationError || err instanceof UserAuthenticationExpiredError),
  });
  (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect" || status.type === "reconnect") log.warn({ nats: status.type }, "nats connection");
    }
  })().catch(() => {});
  const jsm = await jetstreamManager(nc).catch(async (err: unknown) => {
    await nc.close();
    throw err;
  });
  return {
    nc,
    js: jetstream(nc),
    jsm,
    close: () => nc.drain(),
  };
}

/**
 * The client takes credentials as options, not from server URLs, so
 * `nats://user:pass@host` (or `nats://token@host`) in NATS_URL is turned into
 * them, and the servers are listed without them.
 */
export function serversAndCredentials(servers: string[]): { servers: string[]; user?: string; pass?: string; token?: string } {
  const credentials: { user?: string; pass?: string; token?: string } = {};
  const bare = servers.map((server) => {
    const at = server.lastIndexOf("@");
    if (at < 0) return server;
    const scheme = server.includes("://") ? server.slice(0, server.indexOf("://") + 3) : "";
    const [user, pass] = server.slice(scheme.length, at).split(":").map(decodeURIComponent);
    if (pass !== undefined) Object.assign(credentials, { user, pass });
    else credentials.token = user;
    return `${scheme}${server.slice(at + 1)}`;
  });
  return { servers: bare, ...credentials };
}
