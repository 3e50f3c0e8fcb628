import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { status as Status } from "@grpc/grpc-js";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { LedgerService } from "../../gen/tally/account/v1/ledger_service_pb";
import { ErrorInfoSchema, BadRequestSchema } from "../../gen/google/rpc/error_details_pb";
import { RiskService } from "../../gen/tally/risk/v1/risk_service_pb";
import { TransactionService } from "../../gen/tally/transactions/v1/transaction_service_pb";
import { TransferStatus } from "../../gen/tally/transactions/v1/transfer_pb";
import { createServiceClient } from "../../platform/grpc/client";
import { Lifecycle } from "../../platform/lifecycle";
import { newId } from "../../platform/ids";
import { testLogger } from "../../test/support/infra";
import { expectRpcError, fund, openAccount } from "../../services/transactions/test/fixtures";
import { startTransactionsHarness, type TransactionsHarness } from "../../services/transactions/test/harness";
import { gatewayConfig } from "../src/config";
import { startGateway } from "../src/gateway";

let h: TransactionsHarness;
let lifecycle: Lifecycle;
let base: string;
let target: string;

beforeAll(async () => {
  h = await startTransactionsHarness();
  lifecycle = new Lifecycle(testLogger());
  const gateway = await startGateway(
    gatewayConfig({
      HTTP_HOST: "127.0.0.1",
      HTTP_PORT: "0",
      LOG_LEVEL: "silent",
      SHUTDOWN_GRACE_MS: "500",
      ACCOUNT_SERVICE_URL: h.accountTarget,
      TRANSACTIONS_SERVICE_URL: `127.0.0.1:${h.service.port}`,
      RISK_SERVICE_URL: h.env.RISK_SERVICE_URL,
    }),
    testLogger(),
    lifecycle,
  );
  target = `127.0.0.1:${gateway.port}`;
  base = `http://${target}`;
});
afterAll(async () => {
  await lifecycle.stop("test done");
  await h.stop();
});

describe("one port, every protocol", () => {
  it("serves gRPC over HTTP/2 to a grpc-js client", async () => {
    const client = createServiceClient(AccountService, target, { defaultTimeoutMs: 10_000 });
    const { account } = await client.getSystemAccount({ currency: "USD" });
    expect(account?.currency).toBe("USD");
    client.close();
  });

  it("serves Connect with JSON over HTTP/1.1 and binary over HTTP/2", async () => {
    for (const transport of [
      createConnectTransport({ baseUrl: base, httpVersion: "1.1", useBinaryFormat: false }),
      createConnectTransport({ baseUrl: base, httpVersion: "2", useBinaryFormat: true }),
    ]) {
      const client = createClient(AccountService, transport);
      expect((await client.getSystemAccount({ currency: "EUR" })).account?.currency).toBe("EUR");
    }
  });

  it("serves gRPC-Web", async () => {
    const client = createClient(AccountService, createGrpcWebTransport({ baseUrl: base, httpVersion: "1.1" }));
    expect((await client.getSystemAccount({ currency: "GBP" })).account?.currency).toBe("GBP");
  });

  it("serves Connect JSON to a plain HTTP POST, as curl would send it", async () => {
    const res = await fetch(`${base}/tally.account.v1.AccountService/GetSystemAccount`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ currency: "JPY" }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { account: { currency: string; kind: string } };
    expect(body.account).toMatchObject({ currency: "JPY", kind: "ACCOUNT_KIND_SETTLEMENT" });
  });

  it("moves money end to end through the gateway", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 1_000n);
    const client = createClient(TransactionService, createConnectTransport({ baseUrl: base, httpVersion: "2" }));
    const { transfer } = await client.createTransfer({ requestId: newId(), fromAccountId: a.id, toAccountId: b.id, amount: { amount: 250n, currency: "USD" } });
    expect(transfer?.status).toBe(TransferStatus.POSTED);
  });
});

describe("errors keep their reason and fields on every protocol", () => {
  it("over gRPC", async () => {
    const client = createServiceClient(AccountService, target, { defaultTimeoutMs: 10_000 });
    await expectRpcError(client.getAccount({ accountId: "nope" }), Status.INVALID_ARGUMENT, "INVALID_ID", "account_id");
    client.close();
  });

  it("over Connect", async () => {
    const client = createClient(AccountService, createConnectTransport({ baseUrl: base, httpVersion: "1.1" }));
    const err = await client.getAccount({ accountId: newId() }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.NotFound);
    expect(err?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("ACCOUNT_NOT_FOUND");
    expect(err?.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("account_id");
  });
});

describe("internal methods are not reachable", () => {
  it("LedgerService is not served at all", async () => {
    const client = createServiceClient(LedgerService, target, { defaultTimeoutMs: 10_000 });
    await expect(client.reconcile({})).rejects.toMatchObject({ code: Status.UNIMPLEMENTED });
    client.close();
  });

  it("RiskService.AssessTransfer is not, though its public methods are", async () => {
    const client = createClient(RiskService, createConnectTransport({ baseUrl: base, httpVersion: "1.1" }));
    const err = await client.assessTransfer({}).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.Unimplemented);
    expect((await client.listRules({})).rules.length).toBeGreaterThan(0);
  });
});

describe("REST JSON, transcoded from the google.api.http annotations", () => {
  const rest = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };

  it("creates and reads with path, query and body mapped onto the request", async () => {
    const created = await rest("POST", "/v1/accounts", { requestId: newId(), customerId: "rest-alice", currency: "USD", overdraftLimit: "100" });
    expect(created.status).toBe(200);
    const id = created.body.account.id as string;
    expect(created.body.account).toMatchObject({ customerId: "rest-alice", overdraftLimit: "100", status: "ACCOUNT_STATUS_ACTIVE" });
    expect((await rest("GET", `/v1/accounts/${id}`)).body.account.id).toBe(id);
    expect((await rest("GET", `/v1/accounts/${id}/balance`)).body.balance).toMatchObject({ accountId: id, overdraftLimit: "100" });
    expect((await rest("GET", "/v1/customers/rest-alice/accounts?page_size=1")).body.accounts).toHaveLength(1);
    expect((await rest("POST", `/v1/accounts/${id}:freeze`, { reason: "check" })).body.account.status).toBe("ACCOUNT_STATUS_FROZEN");
  });

  it("moves money with POST /v1/transfers and lists it with repeated query parameters", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 1_000n);
    const { status, body } = await rest("POST", "/v1/transfers", { requestId: newId(), fromAccountId: a.id, toAccountId: b.id, amount: { amount: "300", currency: "USD" } });
    expect([status, body.transfer.status, body.transfer.amount.amount]).toEqual([200, "TRANSFER_STATUS_POSTED", "300"]);
    const listed = await rest("GET", `/v1/accounts/${b.id}/transfers?statuses=TRANSFER_STATUS_POSTED&statuses=TRANSFER_STATUS_HELD`);
    expect(listed.body.transfers.map((t: { id: string }) => t.id)).toEqual([body.transfer.id]);
  });

  it("answers errors as JSON with the HTTP status, the reason and the fields", async () => {
    const missing = await rest("GET", `/v1/accounts/${newId()}`);
    expect(missing).toMatchObject({ status: 404, body: { error: { code: 404, status: "NOT_FOUND", reason: "ACCOUNT_NOT_FOUND", fieldViolations: [{ field: "account_id" }] } } });
    const bad = await rest("POST", "/v1/accounts", { requestId: newId(), customerId: "x", currency: "usd" });
    expect(bad).toMatchObject({ status: 400, body: { error: { status: "INVALID_ARGUMENT", reason: "UNKNOWN_CURRENCY", fieldViolations: [{ field: "currency" }] } } });
    const malformed = await rest("POST", "/v1/accounts", "{not json");
    expect(malformed).toMatchObject({ status: 400, body: { error: { reason: "MALFORMED_REQUEST" } } });
    const unfit = await rest("POST", "/v1/accounts", { currency: 7, nonsense: true });
    expect(unfit).toMatchObject({ status: 400, body: { error: { reason: "MALFORMED_REQUEST" } } });
    expect((await rest("GET", "/v1/nowhere")).status).toBe(404);
  });

  it("has no route to internal methods", async () => {
    // AssessTransfer has no annotation, and is not public; the ledger has neither.
    expect((await rest("POST", "/v1/assessments", {})).status).toBe(404);
  });
});

describe("probes", () => {
  it("/healthz answers while the process runs; /readyz only when every service is SERVING", async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { status: string }).status).toBe("ready");
  });

  it("/readyz says not ready when a service does not answer", async () => {
    const lonely = new Lifecycle(testLogger());
    const gateway = await startGateway(
      gatewayConfig({ HTTP_HOST: "127.0.0.1", HTTP_PORT: "0", LOG_LEVEL: "silent", SHUTDOWN_GRACE_MS: "500", ACCOUNT_SERVICE_URL: h.accountTarget, TRANSACTIONS_SERVICE_URL: "127.0.0.1:1", RISK_SERVICE_URL: h.env.RISK_SERVICE_URL }),
      testLogger(),
      lonely,
    );
    const res = await fetch(`http://127.0.0.1:${gateway.port}/readyz`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { backends: Record<string, string> }).backends["127.0.0.1:1"]).toBe("NOT_SERVING");
    await lonely.stop("test done");
  });
});
