import { runTs } from "../support/run-ts";
import { startSystem, type System } from "../support/system";

// `npm run demo` against the running system, as a reader runs it after `npm start`.
let system: System;

beforeAll(async () => {
  // Processes started from source are slow to warm up on a busy machine: risk's deadline must not decide the tour's outcomes.
  system = await startSystem({ OTEL_TRACES_EXPORTER: "none", RISK_DEADLINE_MS: "5000" });
}, 120_000);
afterAll(() => system?.stop());

const demo = (env: Record<string, string>) => runTs("cli/demo.ts", [], env, 90_000);

it("walks through every kind of money movement, each call with its trace id", async () => {
  const { code, stdout, stderr } = await demo({ TALLY_URL: system.gatewayUrl, JAEGER_URL: "http://jaeger.example" });
  expect(stderr).toBe("");
  expect(code).toBe(0);
  const call = (text: string) => new RegExp(`^   \\[trace [0-9a-f]{32}\\] ${text}$`, "m");
  const steps = [
    call("open a USD account for alice-\\w+: account [0-9a-f-]{36}"),
    call("open a USD account for bob-\\w+: account [0-9a-f-]{36}"),
    call("deposit USD 5,000\\.00: POSTED"),
    call("transfer USD 25\\.00 to Bob: POSTED"),
    call("transfer USD 1,000,000\\.00 to Bob: DECLINED by risk"),
    call("the analyst reads the rules it met: very large amount \\(v1\\);.*"),
    call("transfer USD 1,200\\.00 to Bob: HELD for review"),
    call("the analyst lists open reviews of the account: 1 open \\(young account, large amount \\(v1\\)\\)"),
    call("the analyst approves it: APPROVED"),
    call("the held transfer, once the approval arrives: POSTED"),
    call("authorize USD 80\\.00 to Bob: HELD"),
    call("capture USD 50\\.00 of it: captured USD 50\\.00, USD 30\\.00 released"),
    call("reverse USD 10\\.00 of the USD 25\\.00 payment: reversal POSTED, USD 10\\.00 reversed"),
    call("balance: posted USD 3,735\\.00, available USD 3,735\\.00"),
    call("entries: 5 posted entries"),
    /^ +USD 5,000\.00 +settlement +balance USD 5,000\.00\n +USD -25\.00 +Bob +balance USD 4,975\.00\n +USD -1,200\.00 +Bob +balance USD 3,775\.00\n +USD -50\.00 +Bob +balance USD 3,725\.00\n +USD 10\.00 +Bob +balance USD 3,735\.00$/m,
    /The balance adds up: USD 3,735\.00\./,
    /http:\/\/jaeger\.example\/trace\/[0-9a-f]{32}/,
  ];
  for (const step of steps) expect(stdout).toMatch(step);

  // What it printed is what the ledger holds.
  const accountId = /open a USD account for alice-\w+: account ([0-9a-f-]{36})/.exec(stdout)![1];
  const response = await fetch(`${system.gatewayUrl}/v1/accounts/${accountId}/balance`, { headers: { Authorization: `Bearer ${await system.token("teller")}` } });
  expect(await response.json()).toMatchObject({ balance: { posted: "373500", available: "373500" } });
  // Every call had its own trace.
  const traces = [...stdout.matchAll(/trace ([0-9a-f]{32})/g)].map((m) => m[1]);
  expect(traces.length).toBe(16);
  expect(new Set(traces).size).toBe(traces.length);
}, 120_000);

it("says what went wrong, and fails, when the gateway is not there", async () => {
  const { code, stderr } = await demo({ TALLY_URL: "http://127.0.0.1:9" });
  expect(code).toBe(1);
  expect(stderr).toMatch(/^\ndemo failed: .*(ECONNREFUSED|unavailable)/is);
});
