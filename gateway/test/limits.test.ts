import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { status as Status } from "@grpc/grpc-js";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb";
import { RiskDecision } from "../../gen/tally/transactions/v1/transfer_pb";
import { RiskService } from "../../gen/tally/risk/v1/risk_service_pb";
import { ReviewStatus } from "../../gen/tally/risk/v1/risk_pb";
import { createServiceClient } from "../../platform/grpc/client";
import { newId } from "../../platform/ids";
import { balanceOf, expectRpcError, fund, openAccount } from "../../services/transactions/test/fixtures";
import { transferToAssess } from "../../services/risk/test/fixtures";
import { bearer, grpcAuth, startGatewayFor, startGatewayHarness, tokenFor, type GatewayHarness } from "./harness";
import { startProbeBackend, type ProbeBackend } from "./probe-backend";

let h: GatewayHarness;
beforeAll(async () => {
  h = await startGatewayHarness();
});
afterAll(() => h.stop());

const restPost = async (base: string, path: string, body: object, headers: Record<string, string>) => {
  const res = await fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, any> };
};

describe("the Idempotency-Key header", () => {
  it("becomes the request id: the same key twice moves money once and answers the same", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 1_000n);
    const headers = { authorization: `Bearer ${await tokenFor("teller")}`, "idempotency-key": `key-${newId()}` };
    const body = { fromAccountId: a.id, toAccountId: b.id, amount: { amount: "70", currency: "USD" } };
    const first = await restPost(h.gateway.base, "/v1/transfers", body, headers);
    const again = await restPost(h.gateway.base, "/v1/transfers", body, headers);
    expect(first.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(first.body.transfer.requestId).toBe(headers["idempotency-key"]);
    expect((await balanceOf(h, a.id)).posted).toBe(930n);
  });

  it("is each caller's own: two customers who pick the same key make two payments, and neither gets the other's answer", async () => {
    const [alice, bob] = [`idem-alice-${newId().slice(-6)}`, `idem-bob-${newId().slice(-6)}`];
    const [fromAlice, fromBob, payee] = [await openAccount(h, { customerId: alice }), await openAccount(h, { customerId: bob }), await openAccount(h)];
    await Promise.all([fund(h, fromAlice.id, 1_000n), fund(h, fromBob.id, 1_000n)]);
    const key = "order-1001";
    const pay = async (customer: string, from: string, amount: string) =>
      restPost(h.gateway.base, "/v1/transfers", { fromAccountId: from, toAccountId: payee.id, amount: { amount, currency: "USD" } }, { authorization: `Bearer ${await tokenFor("customer", customer)}`, "idempotency-key": key });
    const [alices, bobs] = [await pay(alice, fromAlice.id, "70"), await pay(bob, fromBob.id, "80")];
    expect([alices.status, bobs.status]).toEqual([200, 200]);
    expect(bobs.body.transfer.id).not.toBe(alices.body.transfer.id);
    expect((await pay(alice, fromAlice.id, "70")).body).toEqual(alices.body);
    expect((await balanceOf(h, payee.id)).posted).toBe(150n);
  });

  it("makes a batch safe to send again: each item without a request id of its own gets the key and its place", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 1_000n);
    const key = `batch-${newId()}`;
    const headers = { authorization: `Bearer ${await tokenFor("teller")}`, "idempotency-key": key };
    const item = (amount: string, requestId?: string) => ({ fromAccountId: a.id, toAccountId: b.id, amount: { amount, currency: "USD" }, ...(requestId ? { requestId } : {}) });
    const body = { transfers: [item("10"), item("20", `own-${key}`), item("30")] };
    const first = await restPost(h.gateway.base, "/v1/transfers:batchCreate", body, headers);
    const again = await restPost(h.gateway.base, "/v1/transfers:batchCreate", body, headers);
    expect(first.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(first.body.results.map((r: { transfer: { requestId: string } }) => r.transfer.requestId)).toEqual([`${key}.0`, `own-${key}`, `${key}.2`]);
    expect((await balanceOf(h, b.id)).posted).toBe(60n);
    // An item's own id may not be one the key gives another item.
    const clash = await restPost(h.gateway.base, "/v1/transfers:batchCreate", { transfers: [item("10"), item("20", `${key}.0`)] }, headers);
    expect(clash).toMatchObject({ status: 400, body: { error: { reason: "INVALID_FIELD", fieldViolations: [{ field: "transfers[1].request_id" }] } } });
    // The items' ids must fit: the key leaves room for its place in the batch.
    const long = await restPost(h.gateway.base, "/v1/transfers:batchCreate", body, { ...headers, "idempotency-key": "k".repeat(125) });
    expect(long).toMatchObject({ status: 400, body: { error: { reason: "INVALID_FIELD", fieldViolations: [{ field: "Idempotency-Key" }] } } });
  });

  it("works the same on Connect, and must agree with a request_id given in the body", async () => {
    const key = `key-${newId()}`;
    const client = createClient(AccountService, createConnectTransport({ baseUrl: h.gateway.base, httpVersion: "2", interceptors: [bearer(await tokenFor("teller"))] }));
    const opened = await client.createAccount({ customerId: "idem-key", currency: "USD" }, { headers: { "idempotency-key": key } });
    const replay = await client.createAccount({ customerId: "idem-key", currency: "USD" }, { headers: { "idempotency-key": key } });
    expect(replay.account?.id).toBe(opened.account?.id);
    const clash = await restPost(h.gateway.base, "/v1/accounts", { requestId: newId(), customerId: "idem-key", currency: "USD" }, { authorization: `Bearer ${await tokenFor("teller")}`, "idempotency-key": key });
    expect(clash).toMatchObject({ status: 400, body: { error: { reason: "INVALID_FIELD", fieldViolations: [{ field: "request_id" }] } } });
  });

  it("makes a rule's creation sent twice create one rule", async () => {
    const headers = { authorization: `Bearer ${await tokenFor("analyst")}`, "idempotency-key": `key-${newId()}` };
    const body = { rule: { name: `keyed-${newId()}`, kind: "RULE_KIND_ASSESSMENT", expression: "transfer.amount > 1", action: "RULE_ACTION_REVIEW", enabled: false } };
    const [first, again] = [await restPost(h.gateway.base, "/v1/rules", body, headers), await restPost(h.gateway.base, "/v1/rules", body, headers)];
    expect([first.status, again.status, again.body.rule.id]).toEqual([200, 200, first.body.rule.id]);
  });
});

describe("per-principal rate limits", () => {
  let limited: Awaited<ReturnType<typeof startGatewayFor>>;
  beforeAll(async () => {
    limited = await startGatewayFor(h, { RATE_LIMIT_PER_SECOND: "1", RATE_LIMIT_BURST: "3" });
  });
  afterAll(() => limited.stop());

  it("lets a burst through, then answers 429 with Retry-After, without reaching the service; other principals go on", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 1_000n);
    const teller = { authorization: `Bearer ${await tokenFor("teller", undefined, { subject: `teller-${newId()}` })}` };
    const transfer = () => restPost(limited.base, "/v1/transfers", { requestId: newId(), fromAccountId: a.id, toAccountId: b.id, amount: { amount: "1", currency: "USD" } }, teller);
    // All at once: sent one after another, a slow machine could take the second a token needs to refill.
    const answers = await Promise.all(Array.from({ length: 5 }, () => transfer()));
    expect(answers.map((r) => r.status).sort()).toEqual([200, 200, 200, 429, 429]);
    const refused = answers.find((r) => r.status === 429)!;
    expect(refused).toMatchObject({ body: { error: { code: 429, status: "RESOURCE_EXHAUSTED", reason: "RATE_LIMITED" } } });
    expect(refused.headers.get("retry-after")).toBe("1");
    expect((await balanceOf(h, a.id)).posted).toBe(997n);

    const analyst = await tokenFor("analyst", undefined, { subject: `analyst-${newId()}` });
    expect((await fetch(`${limited.base}/v1/rules`, { headers: { authorization: `Bearer ${analyst}` } })).status).toBe(200);
  });

  it("answers RESOURCE_EXHAUSTED with RetryInfo over gRPC and Connect", async () => {
    const token = await tokenFor("teller", undefined, { subject: `teller-${newId()}` });
    const client = createServiceClient(AccountService, limited.target, { defaultTimeoutMs: 10_000 });
    await Promise.all(Array.from({ length: 3 }, () => client.getSystemAccount({ currency: "USD" }, grpcAuth(token))));
    await expectRpcError(client.getSystemAccount({ currency: "USD" }, grpcAuth(token)), Status.RESOURCE_EXHAUSTED, "RATE_LIMITED");
    client.close();
    const connect = createClient(AccountService, createConnectTransport({ baseUrl: limited.base, httpVersion: "1.1", interceptors: [bearer(token)] }));
    const err = await connect.getSystemAccount({ currency: "USD" }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.ResourceExhausted);
    expect(err?.findDetails(RetryInfoSchema)[0]?.retryDelay?.seconds).toBe(1n);
    expect(err?.metadata.get("retry-after")).toBe("1");
  });
});

describe("what the services are told", () => {
  let probe: ProbeBackend;
  let gateway: Awaited<ReturnType<typeof startGatewayFor>>;
  beforeAll(async () => {
    probe = await startProbeBackend();
    gateway = await startGatewayFor(h, { ACCOUNT_SERVICE_URL: probe.target, GRPC_DEADLINE_MS: "3000", MAX_DEADLINE_MS: "2000" });
  });
  afterAll(async () => {
    await gateway.stop();
    await probe.stop();
  });

  it("the client's deadline, capped, or the default; and who is calling, which a client cannot forge", async () => {
    const token = await tokenFor("teller", undefined, { subject: "teller-deadlines" });
    const client = createClient(AccountService, createConnectTransport({ baseUrl: gateway.base, httpVersion: "2", interceptors: [bearer(token)] }));
    const remaining = async (timeoutMs?: number) => {
      const sent = Date.now();
      await client.getSystemAccount({ currency: "USD" }, { timeoutMs, headers: { "tally-principal": "someone-else" } });
      const seen = probe.calls.at(-1)!;
      expect(seen.principal).toEqual(["teller-deadlines"]);
      return seen.deadline!.getTime() - sent;
    };
    // Each hop measures the deadline from when the call reached it, so a few milliseconds of slack.
    const slack = 50;
    expect(await remaining(500)).toBeLessThanOrEqual(500 + slack);
    expect(await remaining(500)).toBeGreaterThan(300);
    expect(await remaining(60_000)).toBeLessThanOrEqual(2000 + slack);
    expect(await remaining(undefined)).toBeGreaterThan(2000 + slack);
    expect(await remaining(undefined)).toBeLessThanOrEqual(3000 + slack);
  });

  it("who is calling, one name for each subject: a subject that reads like another's encoding is told apart from it", async () => {
    const principalFor = async (subject: string) => {
      const client = createClient(AccountService, createConnectTransport({ baseUrl: gateway.base, httpVersion: "2", interceptors: [bearer(await tokenFor("teller", undefined, { subject }))] }));
      await client.getSystemAccount({ currency: "USD" });
      return probe.calls.at(-1)!.principal[0];
    };
    const [plain, accented, lookalike] = [await principalFor("teller@bank"), await principalFor("renée"), await principalFor("ren%C3%A9e")];
    expect(plain).toBe("teller@bank");
    expect(decodeURIComponent(accented)).toBe("renée");
    expect(decodeURIComponent(lookalike)).toBe("ren%C3%A9e");
    expect(accented).not.toBe(lookalike);
  });

  it("a REST client's deadline comes as X-Server-Timeout", async () => {
    const sent = Date.now();
    await fetch(`${gateway.base}/v1/system-accounts/USD`, { headers: { authorization: `Bearer ${await tokenFor("teller")}`, "x-server-timeout": "0.4" } });
    expect(probe.calls.at(-1)!.deadline!.getTime() - sent).toBeLessThanOrEqual(400 + 50);
  });

  it("an analyst's identity reaches risk, which records who resolved a review, as the name reads", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    const { assessment } = await h.risk.assessTransfer({ transfer: transferToAssess(a.id, b.id, 2_000_000n) });
    expect(assessment?.decision).toBe(RiskDecision.REVIEW);
    const { reviews } = await h.risk.listReviews({ accountId: a.id });
    const analyst = createClient(RiskService, createConnectTransport({ baseUrl: h.gateway.base, httpVersion: "1.1", interceptors: [bearer(await tokenFor("analyst", undefined, { subject: "analyst-adà 100%" }))] }));
    const { review } = await analyst.resolveReview({ reviewId: reviews[0].id, resolution: ReviewStatus.APPROVED, note: "known customer" });
    // Told percent-encoded (anything but printable ASCII, or a "%"), recorded as it reads.
    expect(review?.resolvedBy).toBe("analyst-adà 100%");
  });
});

describe("CORS for configured browser origins", () => {
  let gateway: Awaited<ReturnType<typeof startGatewayFor>>;
  beforeAll(async () => {
    gateway = await startGatewayFor(h, { CORS_ORIGINS: "https://app.example, https://ops.example" });
  });
  afterAll(() => gateway.stop());

  const preflight = (origin: string) =>
    fetch(`${gateway.base}/tally.account.v1.AccountService/GetSystemAccount`, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type, connect-protocol-version, idempotency-key" },
    });

  it("answers a preflight from an allowed origin with the methods and headers Connect and Tally use", async () => {
    const res = await preflight("https://app.example");
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("https://app.example");
    const allowed = (res.headers.get("access-control-allow-headers") ?? "").toLowerCase();
    for (const header of ["authorization", "content-type", "connect-protocol-version", "idempotency-key", "x-grpc-web"]) expect(allowed).toContain(header);
  });

  it("gives no grant to any other origin, and none at all where no origin is configured", async () => {
    expect((await preflight("https://evil.example")).headers.get("access-control-allow-origin")).toBeNull();
    const res = await fetch(`${h.gateway.base}/healthz`, { headers: { origin: "https://app.example" } });
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("marks real responses for the allowed origin and exposes the headers a browser client reads", async () => {
    const res = await fetch(`${gateway.base}/v1/system-accounts/USD`, { headers: { origin: "https://ops.example", authorization: `Bearer ${await tokenFor("teller")}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe("https://ops.example");
    expect((res.headers.get("access-control-expose-headers") ?? "").toLowerCase()).toContain("grpc-status");
  });
});
