import postgres from "postgres";
import { TEST_NATS_URL } from "../support/infra";
import { runTs } from "../support/run-ts";
import { startSystem, type System } from "../support/system";

// `npm run tally`, the operators' command line, against the running system.
let system: System;

beforeAll(async () => {
  // Processes started from source are slow to warm up on a busy machine: risk's deadline must not decide the commands' outcomes.
  system = await startSystem({ OTEL_TRACES_EXPORTER: "none", RISK_DEADLINE_MS: "5000" });
}, 120_000);
afterAll(() => system?.stop());

const tally = (...args: string[]) =>
  runTs("cli/tally.ts", args, { TALLY_URL: system.gatewayUrl, NATS_URL: TEST_NATS_URL, NATS_STREAM: system.stream.name, TALLY_TOKEN: "" }, 30_000);

/** A command that must succeed: its JSON answer, checked to name its trace. */
async function ok(...args: string[]): Promise<Record<string, any>> {
  const run = await tally(...args);
  expect({ args, code: run.code, stderr: run.stderr }).toEqual({ args, code: 0, stderr: expect.stringMatching(/^trace [0-9a-f]{32}\n$/) });
  return JSON.parse(run.stdout);
}

it("opens accounts, moves money, reads balances and statements, and works the review queue", async () => {
  const carol = (await ok("accounts", "open", "carol", "EUR")).account.id;
  const dave = (await ok("accounts", "open", "dave", "EUR")).account.id;
  expect((await ok("accounts", "list", "carol")).accounts.map((a: { id: string }) => a.id)).toEqual([carol]);
  expect((await ok("deposit", carol, "5,000.00", "EUR")).transfer.status).toBe("TRANSFER_STATUS_POSTED");
  const payment = (await ok("transfer", carol, dave, "20.50", "EUR")).transfer;
  expect(payment).toMatchObject({ status: "TRANSFER_STATUS_POSTED", amount: { amount: "2050", currency: "EUR" } });
  // An amount in another currency would be read at the transfer's scale: 5 JPY as 5 cents of a euro.
  expect(await tally("transfers", "reverse", payment.id, "5", "JPY")).toMatchObject({ code: 2, stderr: expect.stringMatching(/^transfer .* moved EUR, not JPY\n/) });
  const reversal = await ok("transfers", "reverse", payment.id, "5", "EUR", "--reason", "partial refund");
  expect(reversal).toMatchObject({ reversal: { status: "TRANSFER_STATUS_POSTED" }, original: { reversedAmount: "500" } });
  expect((await ok("balance", carol)).balance).toMatchObject({ posted: "498450", available: "498450" });
  expect((await ok("statement", carol, "--limit", "2")).entries.map((e: { amount: string }) => e.amount)).toEqual(["500", "2050"]);
  expect((await ok("transfers", "list", carol)).transfers).toHaveLength(3);
  expect((await ok("transfers", "get", payment.id)).transfer.reversedAmount).toBe("500");

  const held = (await ok("transfer", carol, dave, "1500", "EUR")).transfer;
  expect(held).toMatchObject({ status: "TRANSFER_STATUS_HELD", risk: { decision: "RISK_DECISION_REVIEW" } });
  const [review] = (await ok("reviews", "list", "--account", carol)).reviews;
  expect(review.transferId).toBe(held.id);
  expect((await ok("reviews", "approve", review.id, "--note", "known payee")).review).toMatchObject({ status: "REVIEW_STATUS_APPROVED", note: "known payee", resolvedBy: "analyst-1" });
  expect((await ok("accounts", "freeze", dave, "--reason", "investigation")).account.status).toBe("ACCOUNT_STATUS_FROZEN");
}, 90_000);

it("checks the ledger's invariants, asking the account service directly", async () => {
  const run = await runTs("cli/tally.ts", ["reconcile"], { ACCOUNT_SERVICE_URL: `127.0.0.1:${system.processes.account.port}` }, 60_000);
  expect(run.code).toBe(0);
  const report = JSON.parse(run.stdout);
  expect(report).toMatchObject({ balanced: true });
  expect(report.breaches ?? []).toEqual([]);
  expect(Number(report.accountsChecked)).toBeGreaterThan(0);
});

it("retries a create safely with the same request id", async () => {
  const account = (await ok("accounts", "open", "erin", "EUR", "--request-id", "open-erin")).account;
  expect((await ok("accounts", "open", "erin", "EUR", "--request-id", "open-erin")).account.id).toBe(account.id);
});

it("follows the event stream", async () => {
  const run = await tally("events", "tail", "--from-start", "--limit", "3", "--subject", `${system.stream.subjectPrefix}.account.>`);
  expect(run.code).toBe(0);
  const lines = run.stdout.trim().split("\n").map((l) => JSON.parse(l));
  expect(lines).toHaveLength(3);
  for (const line of lines) expect(line).toMatchObject({ subject: expect.stringMatching(new RegExp(`^${system.stream.subjectPrefix}\\.account\\.`)), event: { source: "account" } });
  expect(lines.map((l) => l.seq)).toEqual([...lines.map((l) => l.seq)].sort((a, b) => a - b));
});

it("refuses what it cannot send, and names what the system refused with its reason and trace", async () => {
  expect(await tally("deposit", "some-account", "1.234", "EUR")).toMatchObject({ code: 2, stderr: expect.stringMatching(/^not an amount of EUR: 1\.234\n/) });
  expect(await tally("transfer", "only-one-account")).toMatchObject({ code: 2, stderr: expect.stringMatching(/^not a currency Tally knows/) });
  expect(await tally("balance")).toMatchObject({ code: 2, stderr: expect.stringMatching(/^balance: accountId is missing\n/) });
  expect(await tally("ledger", "post")).toMatchObject({ code: 2, stderr: expect.stringMatching(/^unknown command: ledger post\n/) });
  const missing = await tally("balance", "0190c0de-0000-7000-8000-00000000dead");
  expect(missing).toMatchObject({ code: 1, stderr: expect.stringMatching(/^NotFound ACCOUNT_NOT_FOUND: .* \(trace [0-9a-f]{32}\)\n$/) });
  const denied = await tally("accounts", "open", "frank", "EUR", "--as", "analyst");
  expect(denied).toMatchObject({ code: 1, stderr: expect.stringMatching(/^PermissionDenied /) });
});

// Last: it leaves the ledger broken.
it("exits 1 when the ledger breaks an invariant, naming how many breaches", async () => {
  const account = (await ok("accounts", "open", "gina", "EUR")).account.id;
  const sql = postgres(system.database.url, { max: 1, onnotice: () => {} });
  try {
    await sql`update account.accounts set credits_posted = credits_posted + 1 where id = ${account}`;
  } finally {
    await sql.end();
  }
  const run = await runTs("cli/tally.ts", ["reconcile"], { ACCOUNT_SERVICE_URL: `127.0.0.1:${system.processes.account.port}` }, 60_000);
  expect(run).toMatchObject({ code: 1, stderr: expect.stringMatching(/^the ledger is not balanced: \d+ breaches\n$/) });
  expect(JSON.parse(run.stdout).breaches).toEqual(expect.arrayContaining([expect.objectContaining({ subject: account })]));
});
