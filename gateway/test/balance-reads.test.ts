import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import type { RemoteError } from "../../platform/grpc/status";
import { newId } from "../../platform/ids";
import { ACCOUNTS_PER_LOOKUP } from "../../platform/validation";
import { fund, largestMetadata, openAccount } from "../../services/transactions/test/fixtures";
import { eventually } from "../../test/support/events";
import { bearer, startGatewayFor, startGatewayHarness, tokenFor, type GatewayHarness } from "./harness";
import { startProbeBackend, type ProbeBackend } from "./probe-backend";

let h: GatewayHarness;
beforeAll(async () => {
  h = await startGatewayHarness();
});
afterAll(() => h.stop());

const clientOf = async (base: string, role: "teller" | "customer" = "teller", customerId?: string) =>
  createClient(AccountService, createConnectTransport({ baseUrl: base, httpVersion: "2", interceptors: [bearer(await tokenFor(role, customerId))] }));

/** What a refusal tells the client: its code, machine-readable reason, the field at fault and the message. */
const refusalOf = (call: Promise<unknown>) =>
  call.then(
    () => undefined,
    (e: unknown) => {
      const err = ConnectError.from(e);
      return { code: err.code as number, reason: err.findDetails(ErrorInfoSchema)[0]?.reason, field: err.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field, message: err.rawMessage };
    },
  );

describe("balance reads through the gateway", () => {
  it("read at once, each is answered with its own account's balance as it stands", async () => {
    const accounts = await Promise.all(Array.from({ length: 12 }, () => openAccount(h)));
    await Promise.all(accounts.map((a, i) => fund(h, a.id, BigInt(1_000 * (i + 1)))));
    const client = await clientOf(h.gateway.base);
    const balances = await Promise.all(accounts.map((a) => client.getBalance({ accountId: a.id })));
    expect(balances.map((b) => [b.balance?.accountId, b.balance?.posted, b.balance?.available])).toEqual(
      accounts.map((a, i) => [a.id, BigInt(1_000 * (i + 1)), BigInt(1_000 * (i + 1))]),
    );
    // Read again after a deposit: the balance as it stands now, never an earlier answer.
    await fund(h, accounts[0].id, 5n);
    expect((await client.getBalance({ accountId: accounts[0].id })).balance?.posted).toBe(1_005n);
  });

  it("refused as the account service refuses GetBalance: unknown, malformed and missing ids, each naming the field; an id in capitals is the account", async () => {
    const account = await openAccount(h);
    const client = await clientOf(h.gateway.base);
    for (const accountId of [newId(), "not-a-uuid", ""]) {
      const direct = await h.accounts.getBalance({ accountId }).then(
        () => undefined,
        (e: RemoteError) => ({ code: e.code as number, reason: e.reasonName, field: e.field, message: e.message }),
      );
      expect(direct).toBeDefined();
      expect(await refusalOf(client.getBalance({ accountId }))).toEqual(direct);
    }
    expect((await client.getBalance({ accountId: account.id.toUpperCase() })).balance?.accountId).toBe(account.id);
  });

  it("a customer reads their own account's balance, and not another's", async () => {
    const mine = await openAccount(h, { customerId: "reader-1" });
    const theirs = await openAccount(h, { customerId: "reader-2" });
    const client = await clientOf(h.gateway.base, "customer", "reader-1");
    expect((await client.getBalance({ accountId: mine.id })).balance?.accountId).toBe(mine.id);
    // Another customer's account is as if there were none.
    expect((await refusalOf(client.getBalance({ accountId: theirs.id })))?.code).toBe(Code.NotFound);
  });
});

describe("balance reads share calls to the account service", () => {
  // The first lookup is held until the test lets the probe answer it.
  const holdFirst = { hold: (call: number) => call === 0 };
  /** A gateway in front of the probe, one lookup at a time; by default it keeps its place however long it is out. */
  const gatewayFor = (probe: ProbeBackend, env: Record<string, string> = {}) =>
    startGatewayFor(h, { ACCOUNT_SERVICE_URL: probe.target, BALANCE_LOOKUPS_IN_FLIGHT: "1", BALANCE_LOOKUP_PLACE_MS: "60000", ...env });
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it("reads that arrive while a lookup is out go together in the next one, and each gets its own account's answer", async () => {
    const probe = await startProbeBackend(holdFirst);
    const gateway = await gatewayFor(probe);
    try {
      const client = await clientOf(gateway.base);
      const [first, ...ids] = Array.from({ length: 10 }, () => newId());
      const ahead = client.getBalance({ accountId: first }, { timeoutMs: 10_000 });
      await eventually(async () => probe.calls.length === 1 || undefined, 5_000);
      const answers = Promise.all(ids.map((accountId) => client.getBalance({ accountId }, { timeoutMs: 10_000 })));
      // Time for the nine to reach the gateway and queue behind the first.
      await pause(300);
      probe.release();
      expect((await answers).map((a) => [a.balance?.accountId, a.balance?.posted])).toEqual(ids.map((id) => [id, BigInt(`0x${id.slice(0, 8)}`)]));
      expect((await ahead).balance?.accountId).toBe(first);
      // One lookup went at once, the reads behind it in one more (two, had one come late); no read was a call of its own.
      expect(probe.calls.every((c) => c.method === "lookupAccounts")).toBe(true);
      expect(probe.calls.length).toBeLessThanOrEqual(3);
      expect(probe.calls.flatMap((c) => c.accountIds).sort()).toEqual([first, ...ids].sort());
    } finally {
      await gateway.stop();
      await probe.stop();
    }
  });

  it("a lookup a replica does not answer gives up its place: the reads behind it are answered", async () => {
    const probe = await startProbeBackend(holdFirst);
    const gateway = await gatewayFor(probe, { BALANCE_LOOKUP_PLACE_MS: "200" });
    try {
      const client = await clientOf(gateway.base);
      const first = client.getBalance({ accountId: newId() }, { timeoutMs: 10_000 }).catch(() => undefined);
      await eventually(async () => probe.calls.length === 1 || undefined, 5_000);
      // The first lookup holds the only place until it gives it up; it is never answered in time.
      const ids = Array.from({ length: 5 }, () => newId());
      const answers = await Promise.all(ids.map((accountId) => client.getBalance({ accountId }, { timeoutMs: 5_000 })));
      expect(answers.map((a) => a.balance?.accountId)).toEqual(ids);
      probe.release();
      await first;
    } finally {
      await gateway.stop();
      await probe.stop();
    }
  });

  it("a read whose deadline passes first gives up alone: the read it shared a lookup with is answered", async () => {
    const probe = await startProbeBackend(holdFirst);
    const gateway = await gatewayFor(probe);
    try {
      const client = await clientOf(gateway.base);
      const [first, patient, hurried] = [newId(), newId(), newId()];
      const ahead = client.getBalance({ accountId: first }, { timeoutMs: 10_000 });
      await eventually(async () => probe.calls.length === 1 || undefined, 5_000);
      // Both wait behind the first lookup, then share one with the patient read's deadline.
      const answered = client.getBalance({ accountId: patient }, { timeoutMs: 10_000 });
      // Over REST the client does not give up by itself: X-Server-Timeout is the gateway's deadline alone.
      const refused = await fetch(`${gateway.base}/v1/accounts/${hurried}/balance`, { headers: { authorization: `Bearer ${await tokenFor("teller")}`, "x-server-timeout": "0.15" } });
      expect({ status: refused.status, body: await refused.json() }).toMatchObject({ status: 504, body: { error: { reason: "DEADLINE_EXCEEDED" } } });
      probe.release();
      expect((await answered).balance?.accountId).toBe(patient);
      await ahead;
      const shared = probe.calls.find((c) => c.accountIds?.includes(patient))!;
      expect(shared.accountIds).toContain(hurried);
      expect(shared.deadline!.getTime() - Date.now()).toBeGreaterThan(5_000);
    } finally {
      await gateway.stop();
      await probe.stop();
    }
  });

  it("asks for no more accounts in one lookup than a gRPC message may carry back, whatever their metadata", async () => {
    const probe = await startProbeBackend({ ...holdFirst, metadata: largestMetadata() });
    const gateway = await gatewayFor(probe);
    try {
      const client = await clientOf(gateway.base);
      const ahead = client.getBalance({ accountId: newId() }, { timeoutMs: 30_000 });
      await eventually(async () => probe.calls.length === 1 || undefined, 5_000);
      // 320 accounts of about 55 KB each wait behind it: more than 16 MiB in one answer.
      const ids = Array.from({ length: 320 }, () => newId());
      const answers = Promise.all(ids.map((accountId) => client.getBalance({ accountId }, { timeoutMs: 30_000 })));
      await pause(1_500);
      probe.release();
      expect((await answers).map((a) => a.balance?.accountId)).toEqual(ids);
      await ahead;
      expect(Math.max(...probe.calls.map((c) => c.accountIds!.length))).toBe(ACCOUNTS_PER_LOOKUP);
    } finally {
      await gateway.stop();
      await probe.stop();
    }
  }, 60_000);
});
