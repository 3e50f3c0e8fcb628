import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb";
import { RiskService } from "../../gen/tally/risk/v1/risk_service_pb";
import { DomainError, ErrorReason } from "../../platform/errors";
import { eventually } from "../../test/support/events";
import { freePort } from "../../test/support/infra";
import { bearer, startGatewayFor, startGatewayHarness, tokenFor, type GatewayHarness } from "./harness";
import { startProbeBackend } from "./probe-backend";

let h: GatewayHarness;
let riskPort: number;
beforeAll(async () => {
  riskPort = await freePort();
  // Risk starts down: the breaker test brings it up.
  h = await startGatewayHarness({ BREAKER_FAILURES: "3", BREAKER_COOLDOWN_MS: "300" }, { withRisk: false, riskPort });
});
afterAll(() => h.stop());

const failure = (e: unknown) => {
  const err = ConnectError.from(e);
  return { code: err.code, reason: err.findDetails(ErrorInfoSchema)[0]?.reason, circuit: err.findDetails(ErrorInfoSchema)[0]?.metadata.circuit };
};

describe("replicas", () => {
  it("spreads calls round-robin over every replica of a service, and routes around one that dies", async () => {
    const replicas = [await startProbeBackend(), await startProbeBackend()];
    const gateway = await startGatewayFor(h, { ACCOUNT_SERVICE_URL: replicas.map((r) => r.target).join(",") });
    const client = createClient(AccountService, createConnectTransport({ baseUrl: gateway.base, httpVersion: "2", interceptors: [bearer(await tokenFor("teller"))] }));
    for (let i = 0; i < 20; i++) await client.getSystemAccount({ currency: "USD" });
    const [first, second] = replicas.map((r) => r.calls.length);
    // Round-robin from the moment both connections are up: an even split give or take the first calls.
    expect([first + second, Math.abs(first - second) <= 4]).toEqual([20, true]);

    await replicas[0].stop();
    for (let i = 0; i < 20; i++) await client.getSystemAccount({ currency: "USD" });
    expect([replicas[0].calls.length, replicas[1].calls.length]).toEqual([first, second + 20]);
    await gateway.stop();
    await replicas[1].stop();
  });
});

describe("a breaker per service", () => {
  it("fails fast once a service keeps being unavailable, and closes again when it is back", async () => {
    const analyst = createClient(RiskService, createConnectTransport({ baseUrl: h.gateway.base, httpVersion: "1.1", interceptors: [bearer(await tokenFor("analyst"))] }));
    const attempts = [];
    for (let i = 0; i < 5; i++) attempts.push(await analyst.listRules({}).then(() => "ok", failure));
    // Three calls find risk unavailable; then the circuit opens and calls are refused without trying.
    expect(attempts.slice(0, 3)).toEqual(Array(3).fill({ code: Code.Unavailable, reason: "UNAVAILABLE", circuit: undefined }));
    expect(attempts.slice(3)).toEqual(Array(2).fill({ code: Code.Unavailable, reason: "UNAVAILABLE", circuit: "open" }));
    // Other services are not affected.
    const teller = createClient(AccountService, createConnectTransport({ baseUrl: h.gateway.base, httpVersion: "1.1", interceptors: [bearer(await tokenFor("teller"))] }));
    expect((await teller.getSystemAccount({ currency: "USD" })).account?.currency).toBe("USD");

    await h.startRisk();
    const { rules } = await eventually(() => analyst.listRules({}).catch(() => undefined), 10_000);
    expect(rules.length).toBeGreaterThan(0);
  });

  it("while one call tests whether a service is back, refuses the others at once instead of holding them past their deadlines", async () => {
    const port = await freePort();
    const gateway = await startGatewayFor(h, { ACCOUNT_SERVICE_URL: `127.0.0.1:${port}`, BREAKER_FAILURES: "3", BREAKER_COOLDOWN_MS: "300" });
    const client = createClient(AccountService, createConnectTransport({ baseUrl: gateway.base, httpVersion: "1.1", interceptors: [bearer(await tokenFor("teller"))] }));
    const call = (timeoutMs: number) => client.getSystemAccount({ currency: "USD" }, { timeoutMs }).then(() => "ok", failure);
    for (let i = 0; i < 3; i++) await call(5_000);
    expect(await call(5_000)).toMatchObject({ circuit: "open" });
    // Back, but slow to answer: the first call after the cool-down tests it and waits.
    const probe = await startProbeBackend({ port, answerAfterMs: 3_000 });
    try {
      await new Promise((resolve) => setTimeout(resolve, 400));
      const test = call(10_000);
      await eventually(async () => probe.calls.length > 0 || undefined, 5_000);
      expect(await call(1_000)).toEqual({ code: Code.Unavailable, reason: "UNAVAILABLE", circuit: "half-open" });
      expect(await test).toBe("ok");
      expect(await call(5_000)).toBe("ok");
    } finally {
      await gateway.stop();
      await probe.stop();
    }
  });

  it.each([
    ["about something behind it", ErrorReason.RISK_UNAVAILABLE, "risk could not answer"],
    ["too busy to take the request now (it serves others)", ErrorReason.OVERLOADED, "busy: 1000 requests at work and 1000 waiting; try again"],
  ])("does not open for a service that answers UNAVAILABLE %s", async (_about, reason, message) => {
    const probe = await startProbeBackend({ failWith: new DomainError(reason, message) });
    const gateway = await startGatewayFor(h, { ACCOUNT_SERVICE_URL: probe.target, BREAKER_FAILURES: "3" });
    const client = createClient(AccountService, createConnectTransport({ baseUrl: gateway.base, httpVersion: "1.1", interceptors: [bearer(await tokenFor("teller"))] }));
    const attempts = [];
    for (let i = 0; i < 5; i++) attempts.push(await client.getSystemAccount({ currency: "USD" }).then(() => "ok", failure));
    expect(attempts).toEqual(Array(5).fill({ code: Code.Unavailable, reason: ErrorReason[reason], circuit: undefined }));
    // Every call reached the service (grpc-js retries UNAVAILABLE on idempotent methods, so some more than once).
    expect(probe.calls.length).toBeGreaterThanOrEqual(5);
    await gateway.stop();
    await probe.stop();
  });
});
