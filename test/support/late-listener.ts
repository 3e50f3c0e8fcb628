import net from "node:net";
import { freePort } from "./infra";

export interface LateListener {
  port: number;
  /** Resolves once it listens. */
  listening: Promise<void>;
  close(): Promise<void>;
}

/**
 * A port where nothing answers for `afterMs`, then a TCP relay to `target`:
 * a server that comes up after its clients, as in a container start or a reboot.
 */
export async function lateListener(target: { host: string; port: number }, afterMs: number): Promise<LateListener> {
  const port = await freePort();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => [client, upstream].forEach((x) => x.destroy()));
    }
    client.pipe(upstream).pipe(client);
  });
  let timer: NodeJS.Timeout | undefined;
  const listening = new Promise<void>((resolve) => {
    timer = setTimeout(() => server.listen(port, "127.0.0.1", resolve), afterMs);
  });
  return {
    port,
    listening,
    close: async () => {
      clearTimeout(timer);
      sockets.forEach((s) => s.destroy());
      if (server.listening) await new Promise((resolve) => server.close(resolve));
    },
  };
}
