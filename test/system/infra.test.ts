import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect, type Socket } from "node:net";
import path from "node:path";
import { projectRoot } from "../../platform/project-root";
import { eventually } from "../support/events";
import { freePort, TEST_NATS_URL } from "../support/infra";

/**
 * scripts/infra.js, which `npm start` and `npm test` run first, against servers it finds: run in a
 * process of its own (it reads its environment when loaded); its error, or "ok".
 */
function ensureInfrastructure(env: Record<string, string>): Promise<string> {
  const script = `require("./scripts/infra").ensureInfrastructure().then(() => console.log("ok"), (err) => console.log(err.message))`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script], { cwd: projectRoot(), env: { ...process.env, ...env, TALLY_DATA_DIR: dataDir }, stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.once("error", reject);
    child.once("exit", () => resolve(out.trim()));
  });
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket: Socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.setTimeout(500, () => {
      socket.destroy();
      resolve(false);
    });
  });
}

const dataDir = mkdtempSync(path.join(tmpdir(), "tally-infra-"));
const started: ChildProcess[] = [];
afterAll(() => {
  for (const child of started) child.kill();
  rmSync(dataDir, { recursive: true, force: true });
});

it("refuses a NATS without JetStream, as Debian's nats-server package runs one, saying what to do", async () => {
  const port = await freePort();
  const nats = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
  started.push(nats);
  await eventually(() => listening(port));
  const answer = await ensureInfrastructure({ NATS_URL: `nats://127.0.0.1:${port}` });
  expect(answer).toMatch(new RegExp(`^NATS at 127\\.0\\.0\\.1:${port} runs without JetStream, which Tally needs`));
});

it("reads NATS_URL given as a bare host:port, as the services do", async () => {
  const { host } = new URL(TEST_NATS_URL);
  expect(await ensureInfrastructure({ NATS_URL: host })).toBe("ok");
});

it("with-infra hands a SIGTERM sent to it alone to everything its command runs, a shell's children included", async () => {
  const run = spawn(process.execPath, ["scripts/with-infra.js", "sh", "-c", "sleep 300 & echo $!; wait"], { cwd: projectRoot(), stdio: ["ignore", "pipe", "ignore"] });
  started.push(run);
  const sleeper = await new Promise<number>((resolve) => run.stdout.once("data", (chunk: Buffer) => resolve(Number(chunk.toString().trim()))));
  // Running, not ended: a child ended after its shell is handed to init, which may reap it late
  // (a zombie, state Z, still answers kill(pid, 0)).
  const alive = () => {
    try {
      return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${sleeper}/stat`, "utf8"));
    } catch {
      return false;
    }
  };
  expect(alive()).toBe(true);
  run.kill("SIGTERM");
  await eventually(async () => !alive(), 10_000);
});
