import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { createTestDatabase, testStream, TEST_NATS_URL, type TestDatabase, type TestStream } from "../support/infra";

/**
 * The README works as written: the system is started with its first command
 * (`npm start`, on ports moved by PORT_OFFSET, with its own database and
 * stream), then what `npm start` prints and every shell and TypeScript
 * example in the README are run against it, in order, as a reader would.
 */
const ROOT = path.resolve(__dirname, "../..");
const README_URL = "http://127.0.0.1:8080";
// Ports npm start uses with no offset: the gateway and its metrics, then each service's.
const DEFAULT_PORTS = [8080, 9464, 50051, 9465, 50052, 9466, 50053, 9467];

/** Shell blocks that are not run here, each with the reason. */
const NOT_RUN: { startsWith: string; why: string }[] = [
  { startsWith: "npm install && npm start", why: "the two commands: this test is started by the second and runs the first itself" },
  { startsWith: "docker compose", why: "no Docker engine on these machines; test/system/deployment.test.ts checks the compose file" },
];

const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
const blocks = (language: string) => [...readme.matchAll(/^```(\w+)\n([\s\S]*?)^```$/gm)].filter((m) => m[1] === language).map((m) => m[2]);

let database: TestDatabase;
let stream: TestStream;
let system: ChildProcess;
let output = "";
let gatewayUrl = "";
let offset = 0;
// What npm start ran with; the reader's second shell has the same (the stream events tail reads, say).
let systemEnv: Record<string, string> = {};

async function portsFree(ports: number[]): Promise<boolean> {
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = net.createServer().once("error", () => resolve(false));
      server.listen(port, "0.0.0.0", () => server.close(() => resolve(true)));
    });
  for (const port of ports) if (!(await free(port))) return false;
  return true;
}

function waitForOutput(text: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${text}" within ${timeoutMs / 1000}s:\n${output.slice(-4000)}`)), timeoutMs);
    const check = () => {
      if (!output.includes(text)) return;
      clearTimeout(timer);
      resolve();
    };
    system.stdout!.on("data", check);
    system.once("exit", (code, signal) => !output.includes(text) && reject(new Error(`npm start exited (${signal ?? code}):\n${output.slice(-4000)}`)));
    check();
  });
}

/** Runs a bash script as a reader's shell would, with curl failing on HTTP errors so that no refusal passes unseen. */
function bash(script: string, env: Record<string, string> = {}): Promise<{ code: number | null; output: string }> {
  const prelude = ["set -euo pipefail", `cd ${JSON.stringify(ROOT)}`, 'curl() { command curl --fail-with-body "$@"; }'].join("\n");
  return new Promise((resolve) => {
    const child = spawn("bash", ["-c", `${prelude}\n${script}`], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (out += c.toString()));
    child.on("exit", (code) => resolve({ code, output: out }));
  });
}

beforeAll(async () => {
  [database, stream] = [await createTestDatabase(), testStream()];
  for (let tries = 0; !offset; tries++) {
    const candidate = 1000 + Math.floor(Math.random() * 90) * 100;
    if (await portsFree(DEFAULT_PORTS.map((p) => p + candidate))) offset = candidate;
    else if (tries > 20) throw new Error("no free set of ports for npm start");
  }
  gatewayUrl = `http://127.0.0.1:${8080 + offset}`;
  systemEnv = {
    PORT_OFFSET: String(offset),
    DATABASE_URL: database.url,
    NATS_URL: TEST_NATS_URL,
    NATS_STREAM: stream.name,
    NATS_SUBJECT_PREFIX: stream.subjectPrefix,
    OTEL_TRACES_EXPORTER: "none",
    LOG_LEVEL: "warn",
  };
  // Its own process group, so that SIGINT reaches npm and everything it started, as Ctrl-C in a terminal does.
  system = spawn("npm", ["start"], { cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...systemEnv } });
  system.stdout!.on("data", (c: Buffer) => (output += c.toString()));
  system.stderr!.on("data", (c: Buffer) => (output += c.toString()));
  await waitForOutput("Ctrl-C stops everything.", 150_000);
}, 180_000);

afterAll(async () => {
  // Stopped as Ctrl-C stops it, whatever ran: npm start's services are their own process groups and would outlive a SIGKILL.
  if (system && system.exitCode === null && system.signalCode === null) {
    const exited = new Promise((resolve) => system.once("exit", resolve));
    process.kill(-system.pid!, "SIGINT");
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 30_000))]);
  }
  await Promise.all([database?.drop(), stream?.delete()]);
}, 40_000);

describe("npm start", () => {
  it("prints every process with its address and metrics, and a token per role", async () => {
    for (const [name, port] of [["gateway", 8080], ["account", 50051], ["transactions", 50052], ["risk", 50053]] as const) {
      expect(output).toMatch(new RegExp(`^  ${name} +.* 127\\.0\\.0\\.1:${port + offset} +metrics http://127\\.0\\.0\\.1:${port === 8080 ? 9464 + offset : port - 50051 + 9465 + offset}/metrics$`, "m"));
    }
    for (const url of output.match(/http:\/\/127\.0\.0\.1:\d+\/metrics/g)!) expect((await fetch(url)).status).toBe(200);
    for (const role of ["TELLER", "ANALYST", "ADMIN", "SERVICE", "CUSTOMER"]) expect(output).toMatch(new RegExp(`^  export ${role}_TOKEN=[\\w-]+\\.[\\w-]+\\.[\\w-]+`, "m"));
  });

  it("prints example calls that work as printed", async () => {
    const exports = output.match(/^  export \w+_TOKEN=\S+/gm)!.join("\n");
    const examples = /^Take the guided tour, or try it through the gateway:\n([\s\S]*?)\n\n/m.exec(output)![1];
    expect(examples).toContain(`TALLY_URL=${gatewayUrl} npm run demo`);
    const { code, output: printed } = await bash(`${exports}\n${examples}`);
    expect({ code, printed }).toEqual({ code: 0, printed: expect.stringContaining("The balance adds up") });
    expect(printed.match(/"kind":\s*"ACCOUNT_KIND_SETTLEMENT"/g)?.length).toBe(3);
  }, 120_000);
});

describe("the README", () => {
  it("has shell examples, and says why each one not run here is not", () => {
    for (const rule of NOT_RUN) expect(blocks("sh").some((b) => b.startsWith(rule.startsWith))).toBe(true);
    expect(blocks("sh").length).toBeGreaterThan(NOT_RUN.length + 5);
  });

  it("runs its shell examples as written, in order, in one shell", async () => {
    const run = blocks("sh").filter((b) => !NOT_RUN.some((rule) => b.startsWith(rule.startsWith)));
    const script = run.map((block, i) => `echo "--- README shell block ${i + 1}"\n${block.replaceAll(README_URL, gatewayUrl)}`).join("\n");
    const { code, output: printed } = await bash(script, { ...systemEnv, TALLY_URL: gatewayUrl });
    expect({ code, tail: printed.slice(-3000) }).toEqual({ code: 0, tail: expect.any(String) });
    // What the examples did is what the system holds: Alice's 5,000.00, less the 12.50 she paid Bob.
    expect(printed).toMatch(/"posted":\s*"498750"/);
    expect(printed).toMatch(/"status":\s*"TRANSFER_STATUS_POSTED"/);
    // The analyst approved the review of the 1,500.00 that risk held.
    expect(printed).toMatch(/"status":\s*"REVIEW_STATUS_APPROVED"/);
    expect(printed).toMatch(/^x-trace-id: [0-9a-f]{32}\r?$/im);
    // The command line's statement and events.
    expect(printed).toMatch(/"amount":\s*"25000",\s*"currency":\s*"EUR"/);
    expect(printed).toMatch(/^\{"seq":1,"subject":"[\w.]+\.account\.account_opened"/m);
  }, 180_000);

  it("runs its TypeScript client as written", async () => {
    const [example] = blocks("ts");
    expect(blocks("ts")).toHaveLength(1);
    // Saved in the project folder, as the README says, but under .tally/ (not versioned): one level down.
    const folder = path.join(ROOT, ".tally", "readme");
    mkdirSync(folder, { recursive: true });
    writeFileSync(path.join(folder, "hello.ts"), example.replaceAll('from "./gen/', 'from "../../gen/'));
    const token = /^  export TELLER_TOKEN=(\S+)/m.exec(output)![1];
    const { code, output: printed } = await bash("node -r @swc-node/register .tally/readme/hello.ts", { TALLY_URL: gatewayUrl, TELLER_TOKEN: token });
    expect({ code, printed }).toEqual({ code: 0, printed: expect.stringMatching(/^deposit POSTED, balance 2000 minor units, trace [0-9a-f]{32}\n$/) });
  }, 60_000);
});

describe("Ctrl-C", () => {
  it("stops every process, and frees every port", async () => {
    const exited = new Promise<void>((resolve) => system.once("exit", () => resolve()));
    const stopped = waitForOutput("Tally stopped.", 40_000);
    process.kill(-system.pid!, "SIGINT");
    await stopped;
    await exited;
    expect(await portsFree(DEFAULT_PORTS.map((p) => p + offset))).toBe(true);
  }, 60_000);
});
