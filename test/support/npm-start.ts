import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { EPHEMERAL, reservePorts } from "./infra";

/** `npm start` run as a reader runs it, in its own process group so that SIGINT reaches it as Ctrl-C does. */
export interface NpmStart {
  child: ChildProcess;
  /** Everything it has written, stdout and stderr together. */
  output(): string;
  /** Resolves once `text` has been written; rejects if it exits first or the time is up. */
  waitFor(text: string, timeoutMs: number): Promise<void>;
  /** Ctrl-C, and its exit (at most `timeoutMs`). */
  interrupt(timeoutMs?: number): Promise<void>;
  /** SIGTERM to npm alone, as a supervisor sends it; resolves once what it ran says it stopped (at most `timeoutMs`). */
  terminate(timeoutMs?: number): Promise<void>;
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
    terminate: async (timeoutMs = 30_000) => {
      child.kill("SIGTERM");
      // npm ends at once; what it started writes on to the same pipes.
      const until = Date.now() + timeoutMs;
      while (!output.includes("Tally stopped.") && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 100));
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

/**
 * A PORT_OFFSET under which every port npm start uses, for `replicas` (at most 2) of each, is free,
 * and none lies where the kernel picks outgoing connections' ports (one of them could be taken in
 * the minute npm start builds before it listens). `slot` (0 or 1) keeps two suites starting at
 * once apart: their offsets differ in the hundreds a second replica adds.
 */
export async function freePortOffset(replicas: 1 | 2, slot: 0 | 1): Promise<number> {
  const ports = (offset: number) => START_PORTS.flatMap((p) => Array.from({ length: replicas }, (_, r) => p + r * 100 + offset));
  const outside = (offset: number) => ports(offset).every((p) => p < EPHEMERAL.low || (p > EPHEMERAL.high && p < 65_536));
  const candidates = Array.from({ length: 150 }, (_, i) => 1000 + i * 100).filter((o) => o % 400 === slot * 200);
  const preferred = candidates.filter(outside);
  for (const offset of shuffled(preferred.length > 0 ? preferred : candidates)) {
    if (!(await portsFree(ports(offset)))) continue;
    reservePorts(ports(offset));
    return offset;
  }
  throw new Error("no free set of ports for npm start");
}

const shuffled = <T>(items: T[]): T[] => items.map((item) => ({ item, key: Math.random() })).sort((a, b) => a.key - b.key).map((x) => x.item);

/**
 * `npm start`, once it reports every process serving. One at a time on this machine: it builds
 * dist/ and its services load it, so two starting at once (two suites) could load files the
 * other is rewriting. What it wrote is in the error if it does not get there.
 */
export async function startedSystem(env: Record<string, string>, timeoutMs: number): Promise<NpmStart> {
  const release = await exclusive(path.join(tmpdir(), `tally-npm-start-${createHash("sha256").update(ROOT).digest("hex").slice(0, 12)}`), timeoutMs);
  const system = npmStart(env);
  try {
    await system.waitFor("Ctrl-C stops everything.", timeoutMs);
    return system;
  } catch (err) {
    await system.interrupt();
    throw err;
  } finally {
    release();
  }
}

/** Holds `dir` as a lock between processes until released; a holder that died leaves it to be taken. */
async function exclusive(dir: string, timeoutMs: number): Promise<() => void> {
  const until = Date.now() + timeoutMs;
  const pidFile = path.join(dir, "pid");
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(pidFile, String(process.pid));
      return () => rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const holder = existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8")) : 0;
    if (holder > 0 && !alive(holder)) rmSync(dir, { recursive: true, force: true });
    else if (Date.now() > until) throw new Error(`another npm start held ${dir} for ${timeoutMs / 1000} s`);
    else await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};
