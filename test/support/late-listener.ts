import net from "node:net";
import { freePort } from "./infra";

export interface LateListener {
  port: number;
  /** Resolves once it relays. */
  listening: Promise<void>;
  close(): Promise<void>;
}

/**
 * A server that comes up after its clients, as in a container start or a
 * reboot: for `afterMs` nothing answers on the port (`refuse`), or a proxy
 * accepts connections and closes them at once (`close`, as Docker's does in
 * front of a container not yet up); then it relays to `target`.
 */
export async function lateListener(target: { host: string; port: number }, afterMs: number, before: "refuse" | "close" = "refuse"): Promise<LateListener> {
  const port = await freePort();
  const sockets = new Set<net.Socket>();
  let relaying = false;
  const server = net.createServer((client) => {
    if (!relaying) return void client.destroy();
    const upstream = net.connect(target);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => [client, upstream].forEach((x) => x.destroy()));
    }
    client.pipe(upstream).pipe(client);
  });
  const listen = () => new Promise<void>((resolve, reject) => server.once("error", reject).listen(port, "127.0.0.1", resolve));
  const early = before === "close" ? listen() : Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const listening = early.then(
    () =>
      new Promise<void>((resolve, reject) => {
        timer = setTimeout(() => {
          relaying = true;
          (server.listening ? Promise.resolve() : listen()).then(resolve, reject);
        }, afterMs);
      }),
  );
  // A port taken meanwhile fails the test that awaits `listening`, not the whole worker.
  listening.catch(() => {});
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
