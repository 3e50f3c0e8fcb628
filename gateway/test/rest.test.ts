import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { TransactionService } from "../../gen/tally/transactions/v1/transaction_service_pb";
import { newId } from "../../platform/ids";
import { balanceOf, fund, openAccount } from "../../services/transactions/test/fixtures";
import { bearer, startGatewayFor, startGatewayHarness, tokenFor, type GatewayHarness } from "./harness";
import { frame, rawGrpcCall } from "./raw-grpc";

let h: GatewayHarness;
let token: string;

beforeAll(async () => {
  h = await startGatewayHarness({ MAX_REQUEST_BYTES: String(64 * 1024) });
  token = await tokenFor("admin");
});
afterAll(() => h.stop());

async function rest(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${h.gateway.base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, any> };
}

describe("REST JSON, transcoded from the google.api.http annotations", () => {
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
    // A repeated field given once is a list of one.
    const posted = await rest("GET", `/v1/accounts/${b.id}/transfers?statuses=TRANSFER_STATUS_POSTED&page_size=5`);
    expect([posted.status, posted.body.transfers?.map((t: { id: string }) => t.id)]).toEqual([200, [body.transfer.id]]);
    const held = await rest("GET", `/v1/accounts/${b.id}/transfers?statuses=TRANSFER_STATUS_HELD`);
    expect([held.status, held.body.transfers ?? []]).toEqual([200, []]);
  });

  it("answers errors as JSON with the HTTP status, the reason and the fields", async () => {
    const missing = await rest("GET", `/v1/accounts/${newId()}`);
    expect(missing).toMatchObject({ status: 404, body: { error: { code: 404, status: "NOT_FOUND", reason: "ACCOUNT_NOT_FOUND", fieldViolations: [{ field: "account_id" }] } } });
    const bad = await rest("POST", "/v1/accounts", { requestId: newId(), customerId: "x", currency: "usd" });
    expect(bad).toMatchObject({ status: 400, body: { error: { status: "INVALID_ARGUMENT", reason: "UNKNOWN_CURRENCY", fieldViolations: [{ field: "currency" }] } } });
    expect((await rest("GET", "/v1/nowhere")).status).toBe(404);
  });

  it("has no route to internal methods", async () => {
    // AssessTransfer has no annotation, and is not public; the ledger has neither.
    expect((await rest("POST", "/v1/assessments", {})).status).toBe(404);
  });
});

describe("malformed input gets a clear 4xx and changes nothing", () => {
  let from: string;
  let to: string;
  const transfers = async () => (await h.transactions.listTransfers({ accountId: from })).transfers.length;

  beforeAll(async () => {
    [from, to] = [(await openAccount(h)).id, (await openAccount(h)).id];
    await fund(h, from, 1_000n);
  });

  const valid = () => ({ requestId: newId(), fromAccountId: from, toAccountId: to, amount: { amount: "10", currency: "USD" } });
  const cases: [string, () => { path?: string; body: unknown; headers?: Record<string, string> }, number, string][] = [
    ["bad JSON", () => ({ body: '{"requestId": ' }), 400, "MALFORMED_REQUEST"],
    ["a JSON array", () => ({ body: "[1, 2]" }), 400, "MALFORMED_REQUEST"],
    ["JSON nested ten thousand deep", () => ({ body: "[".repeat(10_000) + "]".repeat(10_000) }), 400, "MALFORMED_REQUEST"],
    ["a wrong type", () => ({ body: { ...valid(), amount: { amount: "ten", currency: "USD" } } }), 400, "MALFORMED_REQUEST"],
    ["a number where an object belongs", () => ({ body: { ...valid(), amount: 10 } }), 400, "MALFORMED_REQUEST"],
    ["an unknown field", () => ({ body: { ...valid(), ammount: { amount: "10", currency: "USD" } } }), 400, "MALFORMED_REQUEST"],
    ["a fractional amount", () => ({ body: { ...valid(), amount: { amount: "10.5", currency: "USD" } } }), 400, "MALFORMED_REQUEST"],
    // Read as 9007199254740992 by any JSON parser: one unit off, so refused rather than moved.
    ["an amount as a number beyond 2^53", () => ({ body: JSON.stringify(valid()).replace('"amount":"10"', '"amount":9007199254740993') }), 400, "MALFORMED_REQUEST"],
    ["a huge body", () => ({ body: { ...valid(), description: "x".repeat(200 * 1024) } }), 413, "REQUEST_TOO_LARGE"],
    ["a bad path parameter", () => ({ path: "/v1/transfers/not-a-uuid:void", body: {} }), 400, "INVALID_ID"],
    ["a path parameter with a slash in it", () => ({ path: `/v1/transfers/${newId()}%2F..:void`, body: {} }), 400, "INVALID_ID"],
    ["a path parameter with a broken escape", () => ({ path: "/v1/transfers/%E0:void", body: {} }), 400, "MALFORMED_REQUEST"],
  ];

  it.each(cases)("over REST: %s", async (_, make, status, reason) => {
    const before = [await transfers(), await balanceOf(h, from)];
    const { path, body } = make();
    const res = await rest("POST", path ?? "/v1/transfers", body);
    expect(res).toMatchObject({ status, body: { error: { code: status, reason } } });
    expect([await transfers(), await balanceOf(h, from)]).toEqual(before);
  });

  it("over Connect JSON: bad JSON, wrong types, unknown fields, an amount JSON cannot carry exactly and a huge body", async () => {
    const before = [await transfers(), await balanceOf(h, from)];
    const post = (body: string) =>
      fetch(`${h.gateway.base}/tally.transactions.v1.TransactionService/CreateTransfer`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body });
    const inexact = JSON.stringify(valid()).replace('"amount":"10"', '"amount":9007199254740993');
    const deep = `{"metadata":${"[".repeat(10_000)}${"]".repeat(10_000)}}`;
    for (const body of ['{"requestId": ', JSON.stringify({ ...valid(), amount: 10 }), JSON.stringify({ ...valid(), ammount: {} }), inexact, deep]) {
      const res = await post(body);
      expect([res.status, ((await res.json()) as { code: string }).code]).toEqual([400, "invalid_argument"]);
    }
    // Said of the field, with Tally's reason, as every error is.
    const refused = (await (await post(inexact)).json()) as { details: { type: string; debug?: { reason?: string; fieldViolations?: { field: string }[] } }[] };
    expect(refused.details.map((d) => d.debug?.reason ?? d.debug?.fieldViolations?.[0].field)).toEqual(["MALFORMED_REQUEST", "amount.amount"]);
    const huge = await post(JSON.stringify({ ...valid(), description: "x".repeat(200 * 1024) }));
    expect([huge.status, ((await huge.json()) as { code: string }).code]).toEqual([429, "resource_exhausted"]);
    const client = createClient(TransactionService, createConnectTransport({ baseUrl: h.gateway.base, httpVersion: "2", useBinaryFormat: true, interceptors: [bearer(token)] }));
    await expect(client.createTransfer({ ...valid(), amount: { amount: 10n, currency: "USD" }, description: "x".repeat(200 * 1024) })).rejects.toMatchObject({ code: 8 });
    expect([await transfers(), await balanceOf(h, from)]).toEqual(before);
  });

  // connect-es reads JSON in every protocol with JSON.parse: each framing must be refused before it.
  const PATH = "/tally.transactions.v1.TransactionService/CreateTransfer";
  const inexactBody = () => Buffer.from(JSON.stringify(valid()).replace('"amount":"10"', '"amount":9007199254740993'));
  const connectUnary = async (init: RequestInit) => {
    const res = await fetch(`${h.gateway.base}${PATH}`, { method: "POST", ...init, headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...init.headers } });
    return { status: String(res.status), message: ((await res.json()) as { message: string }).message };
  };
  const framings: [string, () => Promise<{ status?: string; message?: string }>][] = [
    ["Connect JSON sent in chunks, with no length", () => connectUnary({ body: Readable.toWeb(Readable.from([inexactBody()])) as ReadableStream, duplex: "half" } as RequestInit)],
    ["Connect JSON compressed", () => connectUnary({ body: gzipSync(inexactBody()), headers: { "content-encoding": "gzip" } })],
    [
      "gRPC-Web JSON",
      async () => {
        const res = await fetch(`${h.gateway.base}${PATH}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/grpc-web+json" }, body: frame(inexactBody()) });
        const trailer = Buffer.from(await res.arrayBuffer()).subarray(5).toString();
        return { status: /^grpc-status: (\d+)/m.exec(trailer)?.[1], message: decodeURIComponent(/^grpc-message: (.*)\r$/m.exec(trailer)?.[1] ?? "") };
      },
    ],
    ["gRPC JSON", () => rawGrpcCall(h.gateway.base, PATH, frame(inexactBody()), { authorization: `Bearer ${token}`, "content-type": "application/grpc+json" })],
  ];

  it.each(framings)("over %s: an amount JSON cannot carry exactly is refused, with its field", async (_, send) => {
    const before = [await transfers(), await balanceOf(h, from)];
    const { status, message } = await send();
    expect({ status: status === "400" ? "3" : status, message }).toEqual({ status: "3", message: expect.stringContaining("amount.amount is a number beyond 2^53") });
    expect([await transfers(), await balanceOf(h, from)]).toEqual(before);
  });
});

describe("a body the answer does not need", () => {
  /**
   * Sends a request over HTTP/1.1 whose body comes in two parts, the second after the
   * gateway has had time to answer: what the client sees, response or socket error.
   */
  function sendSlowly(method: string, path: string, bodyBytes: number): Promise<{ status?: number; body?: string; error?: string }> {
    const url = new URL(path, h.gateway.base);
    return new Promise((resolve) => {
      const req = http.request(url, { method, headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "content-length": bodyBytes } });
      let answered: { status?: number; body?: string } = {};
      req.on("response", (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => (answered = { status: res.statusCode, body }));
      });
      // Written to its end, and a moment for a reset of the connection to arrive.
      req.on("finish", () => setTimeout(() => resolve(answered), 200));
      req.on("error", (err: NodeJS.ErrnoException) => resolve({ ...answered, error: err.code ?? err.message }));
      setTimeout(() => resolve({ ...answered, error: "the body could not be written to its end" }), 5_000);
      const half = Math.floor(bodyBytes / 2);
      req.write(Buffer.alloc(half, 0x20));
      setTimeout(() => req.end(Buffer.alloc(bodyBytes - half, 0x20)), 300);
    });
  }

  it("is read to its end before the answer, so a client still sending it reads the answer instead of failing to write", async () => {
    for (const [method, path] of [["DELETE", "/v1/nowhere"], ["GET", `/v1/accounts/${newId()}`]]) {
      const answer = await sendSlowly(method, path, 256 * 1024);
      expect(answer).toMatchObject({ status: 404 });
      expect(answer.error).toBeUndefined();
    }
  });
});

describe("query parameters cannot reach past the request's fields", () => {
  it.each(["__proto__.roles=admin", "constructor.prototype.roles=admin", "page_size=1&page_size.x=2", "created..start_time=1"])("refuses %s as malformed, without a token even", async (query) => {
    const res = await fetch(`${h.gateway.base}/v1/accounts/${newId()}/transfers?${query}`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { reason: string } }).error.reason).toBe("MALFORMED_REQUEST");
  });

  it("leaves no trace on the process: a token without roles is still denied, one without a customer_id still its own", async () => {
    await fetch(`${h.gateway.base}/v1/accounts/${newId()}/transfers?__proto__.roles=admin&__proto__.customer_id=victim`);
    expect(({} as Record<string, unknown>).roles).toBeUndefined();
    const roleless = await tokenFor("teller", undefined, { roles: [] });
    expect((await rest("GET", "/v1/system-accounts/USD", undefined, { authorization: `Bearer ${roleless}` })).status).toBe(403);
  });

  it("a JSON body's __proto__ key is just an unknown field", async () => {
    const res = await rest("POST", "/v1/accounts", '{"__proto__": {"customerId": "x"}, "currency": "USD"}');
    expect(res).toMatchObject({ status: 400, body: { error: { reason: "MALFORMED_REQUEST" } } });
  });
});

describe("probes", () => {
  it("/healthz answers while the process runs; /readyz only when every service is SERVING; neither needs a token", async () => {
    expect((await fetch(`${h.gateway.base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${h.gateway.base}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { status: string }).status).toBe("ready");
  });

  it("/readyz says not ready when a service has no replica answering, counting replicas without naming them", async () => {
    const lonely = await startGatewayFor(h, { TRANSACTIONS_SERVICE_URL: "127.0.0.1:1" });
    const res = await fetch(`${lonely.base}/readyz`);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { backends: Record<string, unknown> };
    expect(body.backends).toEqual({ account: { replicas: 1, serving: 1 }, transactions: { replicas: 1, serving: 0 }, risk: { replicas: 1, serving: 1 } });
    expect(JSON.stringify(body)).not.toContain("127.0.0.1");
    await lonely.stop();
  });

  it("/readyz asked many times at once checks each replica once (it needs no token, so anyone may ask)", async () => {
    // A replica that answers every gRPC call (each health check is one) UNAVAILABLE, and counts them.
    let checks = 0;
    const failing = http2.createServer();
    failing.on("stream", (stream) => {
      checks++;
      stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "14" }, { endStream: true });
    });
    await new Promise<void>((resolve) => failing.listen(0, "127.0.0.1", resolve));
    const gateway = await startGatewayFor(h, { RISK_SERVICE_URL: `127.0.0.1:${(failing.address() as AddressInfo).port}` });
    const answers = await Promise.all(Array.from({ length: 20 }, () => fetch(`${gateway.base}/readyz`).then((r) => r.status)));
    expect(answers).toEqual(Array(20).fill(503));
    expect(checks).toBeGreaterThan(0);
    expect(checks).toBeLessThanOrEqual(3);
    await gateway.stop();
    failing.close();
  });
});
