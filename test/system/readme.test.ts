import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createTestDatabase, testStream, TEST_NATS_URL, type TestDatabase, type TestStream } from "../support/infra";
import { freePortOffset, portsFree, START_PORTS, startedSystem, type NpmStart } from "../support/npm-start";

/**
 * The README works as written: the system is started with its first command
 * (`npm start`, on ports moved by PORT_OFFSET, with its own database and
 * stream), then what `npm start` prints and every shell and TypeScript
 * example in the README are run against it, in order, as a reader would.
 */
const ROOT = path.resolve(__dirname, "../..");
const README_URL = "http://127.0.0.1:8080";

/** Shell blocks that are not run here, each with the reason. */
const NOT_RUN: { startsWith: string; why: string }[] = [
  { startsWith: "npm install && npm start", why: "the two commands: this test is started by the second and runs the first itself" },
  { startsWith: "docker compose", why: "no Docker engine on these machines; test/system/deployment.test.ts checks the compose file" },
];

const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
const blocks = (language: string) => [...readme.matchAll(/^```(\w+)\n([\s\S]*?)^```$/gm)].filter((m) => m[1] === language).map((m) => m[2]);

let database: TestDatabase;
let stream: TestStream;
let system: NpmStart;
let output = "";
let gatewayUrl = "";
let offset = 0;
// What npm start ran with; the reader's second shell has the same (the stream events tail reads, say).
let systemEnv: Record<string, string> = {};

/** Runs a bash script as a reader's shell would, with curl failing on HTTP errors so that no refusal passes unseen. */
function bash(script: string, env: Record<string, string> = {}, timeoutMs = 120_000): Promise<{ code: number | null; output: string }> {
  const prelude = ["set -euo pipefail", `cd ${JSON.stringify(ROOT)}`, 'curl() { command curl --fail-with-body "$@"; }'].join("\n");
  return new Promise((resolve) => {
    // Its own process group, so that a script that hangs is stopped with everything it started.
    const child = spawn("bash", ["-c", `${prelude}\n${script}`], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
    const timer = setTimeout(() => process.kill(-child.pid!, "SIGKILL"), timeoutMs);
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (out += c.toString()));
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output: out });
    });
  });
}

beforeAll(async () => {
  [database, stream] = [await createTestDatabase(), testStream()];
  offset = await freePortOffset(1, 1);
  gatewayUrl = `http://127.0.0.1:${8080 + offset}`;
  systemEnv = {
    PORT_OFFSET: String(offset),
    REPLICAS: "1",
    DATABASE_URL: database.url,
    NATS_URL: TEST_NATS_URL,
    NATS_STREAM: stream.name,
    NATS_SUBJECT_PREFIX: stream.subjectPrefix,
    OTEL_TRACES_EXPORTER: "none",
    LOG_LEVEL: "warn",
  };
  system = await startedSystem(systemEnv, 170_000);
  output = system.output();
}, 360_000);

// Stopped as Ctrl-C stops it, whatever ran: npm start's services are their own process groups and would outlive a SIGKILL.
afterAll(async () => {
  await system?.interrupt();
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
    const script = run.map((block, i) => `printf '\\n--- README shell block ${i + 1}\\n'\n${block.replaceAll(README_URL, gatewayUrl)}`).join("\n");
    const { code, output: printed } = await bash(script, { ...systemEnv, TALLY_URL: gatewayUrl });
    expect({ code, tail: printed.slice(-3000) }).toEqual({ code: 0, tail: expect.any(String) });
    const outputs = printed.split(/^--- README shell block \d+\n/m).slice(1);
    const of = (text: string) => outputs.find((o) => o.includes(text)) ?? "";
    // What the examples did is what the system holds: Alice's 5,000.00, less the 12.50 she paid Bob.
    expect(printed).toMatch(/"posted":\s*"498750"/);
    // The analyst approved the review of the 1,500.00 that risk held, and the held transfer was then posted.
    const review = of('"REVIEW_STATUS_APPROVED"');
    expect(review).toMatch(/"note":"known payee"/);
    expect(JSON.parse(review.slice(review.lastIndexOf('{"transfer"')))).toMatchObject({
      transfer: { status: "TRANSFER_STATUS_POSTED", amount: { amount: "150000" }, capturedAmount: "150000" },
    });
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

describe("a SIGTERM to npm alone, as a supervisor sends it (Ctrl-C: start.test.ts)", () => {
  it("stops every process, and frees every port", async () => {
    await system.terminate(40_000);
    expect(system.output()).toContain("Tally stopped.");
    expect(system.child.exitCode ?? system.child.signalCode).not.toBeNull();
    expect(await portsFree(START_PORTS.map((p) => p + offset))).toBe(true);
  }, 60_000);
});
