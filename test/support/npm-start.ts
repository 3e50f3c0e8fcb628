import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import path from "node:path";

/** `npm start` run as a reader runs it, in its own process group so that SIGINT reaches it as Ctrl-C does. */
export interface NpmStart {
  child: ChildProcess;
  /** Everything it has written, stdout and stderr together. */
  output(): string;
  /** Resolves once `text` has been written; rejects if it exits first or the time is up. */
  waitFor(text: string, timeoutMs: number): Promise<void>;
  /** Ctrl-C, and its exit (at most `timeoutMs`). */
  interrupt(timeoutMs?: number): Promise<void>;
}

const ROOT = path.resolve(__dirname, "../..");
/** The ports npm start uses with no offset: the gateway and its metrics, then each service's. */
export const START_PORTS = [8080, 9464, 50051, 9465, 50052, 9466, 50053, 9467];

export function npmStart(env: Record<string, string>): NpmStart {
  const child = spawn("npm", ["start"], { cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let output = "";
  child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    output: () => output,
    waitFor: (text, timeoutMs) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => finish(new Error(`no "${text}" within ${timeoutMs / 1000}s:\n${output.slice(-4000)}`)), timeoutMs);
        const check = () => output.includes(text) && finish();
        const exited = () => finish(output.includes(text) ? undefined : new Error(`npm start exited (${child.signalCode ?? child.exitCode}):\n${output.slice(-4000)}`));
        function finish(err?: Error) {
          clearTimeout(timer);
          child.stdout!.off("data", check);
          child.off("exit", exited);
          if (err) reject(err);
          else resolve();
        }
        child.stdout!.on("data", check);
        child.once("exit", exited);
        if (output.includes(text)) finish();
        else if (!running()) exited();
      }),
    interrupt: async (timeoutMs = 30_000) => {
      if (!running()) return;
      let timer: NodeJS.Timeout | undefined;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      process.kill(-child.pid!, "SIGINT");
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
    },
  };
}

/** Whether every port is free on all interfaces (the services listen on 0.0.0.0). */
export async function portsFree(ports: number[]): Promise<boolean> {
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = net.createServer().once("error", () => resolve(false));
      server.listen(port, "0.0.0.0", () => server.close(() => resolve(true)));
    });
  for (const port of ports) if (!(await free(port))) return false;
  return true;
}

/** A PORT_OFFSET under which every port npm start uses, for `replicas` of each, is free. */
export async function freePortOffset(replicas = 1): Promise<number> {
  const ports = (offset: number) => START_PORTS.flatMap((p) => Array.from({ length: replicas }, (_, r) => p + r * 100 + offset));
  for (let tries = 0; tries < 50; tries++) {
    const offset = 1000 + Math.floor(Math.random() * 90) * 100;
    if (await portsFree(ports(offset))) return offset;
  }
  throw new Error("no free set of ports for npm start");
}
