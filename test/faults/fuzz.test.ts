import http2 from "node:http2";
import { fromBinary, toJsonString, type DescMethod, type DescService } from "@bufbuild/protobuf";
import postgres from "postgres";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { LedgerService } from "../../gen/tally/account/v1/ledger_service_pb";
import { RiskService } from "../../gen/tally/risk/v1/risk_service_pb";
import { TransactionService } from "../../gen/tally/transactions/v1/transaction_service_pb";
import { publicMethods } from "../../gateway/src/exposure";
import { restRoutes } from "../../gateway/src/rest";
import { createServiceClient } from "../../platform/grpc/client";
import { startSystem, type System } from "../support/system";
import { seededRandom } from "../support/random";
import { FuzzInputs, type KnownIds } from "./fuzz-inputs";

/**
 * Bad input at scale: for a bounded time, concurrent clients send the public
 * API random and malformed requests — protobuf and JSON, over gRPC, Connect
 * and REST, with odd headers, huge and tiny values. No process may crash, no
 * answer may be a server error other than documented unavailability, and no
 * refused request may change anything: every account, transfer and ledger
 * posting made meanwhile belongs to a request that was answered OK.
 * FUZZ_SECONDS (default 15) and FUZZ_SEED (printed on failure) replay a run;
 * FUZZ_SUMMARY=1 prints what was sent and each kind of failure with its count.
 */
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 15);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const CLIENTS = 8;
const SERVICES: DescService[] = [AccountService, TransactionService, RiskService];
const METHODS: DescMethod[] = SERVICES.flatMap(publicMethods);
const ROUTES = restRoutes(SERVICES);
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
// gRPC codes that mean the server failed, not the request: UNKNOWN, INTERNAL, DATA_LOSS.
const SERVER_FAULTS = new Set([2, 13, 15]);

let system: System;
let tokens: Record<"teller" | "customer" | "other", string>;
const known: KnownIds = { accounts: [], transfers: [] };

interface Answer {
  what: string;
  httpStatus: number;
  grpcStatus?: number;
  body: string;
}

beforeAll(async () => {
  system = await startSystem({ OTEL_TRACES_EXPORTER: "none", RATE_LIMIT_PER_SECOND: "100000", RATE_LIMIT_BURST: "100000", LOG_LEVEL: "warn" });
  tokens = { teller: await system.token("teller"), customer: await system.token("customer", "fuzz-alice"), other: await system.token("analyst") };
  const rest = async (path: string, body: object) => {
    const response = await fetch(`${system.gatewayUrl}${path}`, { method: "POST", headers: { Authorization: `Bearer ${tokens.teller}`, "content-type": "application/json" }, body: JSON.stringify(body) });
    return (await response.json()) as Record<string, { id: string }>;
  };
  for (const customerId of ["fuzz-alice", "fuzz-bob"]) known.accounts.push((await rest("/v1/accounts", { requestId: `open-${customerId}`, customerId, currency: "USD" })).account.id);
  known.transfers.push((await rest("/v1/deposits", { requestId: "fund-alice", accountId: known.accounts[0], amount: { amount: "100000", currency: "USD" } })).transfer.id);
}, 120_000);
afterAll(() => system?.stop());

/** One malformed or random request, by one of the ways in. */
async function send(fuzz: FuzzInputs, session: http2.ClientHttp2Session): Promise<Answer> {
  const token = fuzz.pick([tokens.teller, tokens.teller, tokens.customer, tokens.other, "", "not.a.jwt", `${tokens.teller}x`]);
  const auth: Record<string, string> = token ? { authorization: fuzz.chance(0.95) ? `Bearer ${token}` : token } : {};
  const method = fuzz.pick(METHODS);
  const roll = fuzz.random();
  if (roll < 0.4) return sendRest(fuzz, auth);
  if (roll < 0.6) return sendHttp1(`Connect JSON ${method.name}`, `/${method.parent.typeName}/${method.name}`, { ...auth, "content-type": "application/json", ...connectHeaders(fuzz) }, fuzz.jsonBody(method.input));
  if (roll < 0.75) return sendHttp1(`Connect proto ${method.name}`, `/${method.parent.typeName}/${method.name}`, { ...auth, "content-type": "application/proto", ...connectHeaders(fuzz) }, fuzz.binaryBody(method.input));
  if (roll < 0.95) return sendGrpc(fuzz, session, method, auth);
  const path = fuzz.pick(["/", "/v1", "/v2/accounts", `/${fuzz.nastyString().slice(0, 200)}`, "/tally.account.v1.LedgerService/PostTransfers", "/grpc.health.v1.Health/Check"]);
  return sendHttp1(`path ${path.slice(0, 60)}`, encodeURI(wellFormed(path)), { ...auth, "content-type": fuzz.pick(["application/json", "text/plain", "application/grpc-web+proto"]) }, fuzz.nastyString(), fuzz.pick(["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]));
}

/** Lone surrogates cannot be put in a URL at all; the request is sent with them replaced. */
const wellFormed = (text: string) => text.replace(/[\ud800-\udfff]/g, "?");

function connectHeaders(fuzz: FuzzInputs): Record<string, string> {
  const headers: Record<string, string> = {};
  if (fuzz.chance(0.1)) headers["connect-timeout-ms"] = fuzz.pick(["0", "1", "-5", "99999999999", "abc", "1.5"]);
  if (fuzz.chance(0.1)) headers["connect-protocol-version"] = fuzz.pick(["1", "2", ""]);
  if (fuzz.chance(0.05)) headers["content-encoding"] = fuzz.pick(["gzip", "br", "zstd"]);
  if (fuzz.chance(0.1)) headers["idempotency-key"] = fuzz.nastyString().slice(0, 5000).replace(/[^\x20-\x7e]/g, "k") || "k";
  return headers;
}

async function sendRest(fuzz: FuzzInputs, auth: Record<string, string>): Promise<Answer> {
  const route = fuzz.pick(ROUTES);
  let path = route.pattern.source.replace(/^\^|\$$/g, "");
  for (const param of route.params) {
    const value = param.endsWith("account_id") && fuzz.chance(0.6) ? fuzz.pick(known.accounts) : param.endsWith("transfer_id") && fuzz.chance(0.6) ? fuzz.pick(known.transfers) : fuzz.nastyString();
    path = path.replace(/\([^)]*\)/, encodeURIComponent(wellFormed(value.slice(0, 3000))) || "x");
  }
  path = path.replace(/\\/g, "");
  if (fuzz.chance(0.5)) path += `?${fuzz.pick(["page_size=-1", "page_size=99999999999", "page_token=%%%", "statuses=NOPE", "status=1", "x=1&x=2", `layer=${fuzz.nastyString().slice(0, 20)}`])}`;
  const headers: Record<string, string> = { ...auth, "content-type": fuzz.pick(["application/json", "application/json", "text/plain", ""]) };
  if (fuzz.chance(0.1)) headers["x-server-timeout"] = fuzz.pick(["0", "-1", "1e9", "abc", "0.001"]);
  if (fuzz.chance(0.1)) headers["idempotency-key"] = fuzz.nastyString().slice(0, 5000).replace(/[^\x20-\x7e]/g, "k") || "k";
  const verb = fuzz.chance(0.9) ? route.verb : fuzz.pick(["GET", "POST", "DELETE"]);
  return sendHttp1(`REST ${verb} ${route.method.name}`, path, headers, verb === "GET" ? undefined : fuzz.jsonBody(route.method.input), verb);
}

async function sendHttp1(what: string, path: string, headers: Record<string, string>, body?: string | Uint8Array, method = "POST"): Promise<Answer> {
  try {
    const response = await fetch(`${system.gatewayUrl}${path}`, { method, headers, body: method === "GET" || method === "OPTIONS" ? undefined : body });
    return { what, httpStatus: response.status, body: await response.text() };
  } catch (err) {
    // Name the request and what the connection did: "fetch failed" alone says neither.
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`${what} ${method} ${path.slice(0, 80)}: ${(err as Error).message}: ${cause?.code ?? ""} ${cause?.message ?? ""}`);
  }
}

/** A gRPC call made by hand over HTTP/2, so that its frames and headers can be wrong too. */
function sendGrpc(fuzz: FuzzInputs, session: http2.ClientHttp2Session, method: DescMethod, auth: Record<string, string>): Promise<Answer> {
  const message = fuzz.binaryBody(method.input);
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt8(fuzz.chance(0.05) ? 1 : 0, 0);
  // Now and then the length prefix lies.
  frame.writeUInt32BE(fuzz.chance(0.1) ? fuzz.int(2 ** 31) : message.length, 1);
  frame.set(message, 5);
  const headers: http2.OutgoingHttpHeaders = { ":method": "POST", ":path": `/${method.parent.typeName}/${method.name}`, "content-type": "application/grpc", te: "trailers", ...auth };
  if (fuzz.chance(0.15)) headers["grpc-timeout"] = fuzz.pick(["1n", "0S", "99999999S", "5x", "", "100m"]);
  return new Promise((resolve, reject) => {
    const stream = session.request(headers);
    let httpStatus = 0;
    let grpcStatus: number | undefined;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      httpStatus = Number(h[":status"]);
      if (h["grpc-status"] !== undefined) grpcStatus = Number(h["grpc-status"]);
    });
    let grpcMessage = "";
    stream.on("trailers", (t) => {
      grpcStatus = Number(t["grpc-status"]);
      grpcMessage = decodeURIComponent(String(t["grpc-message"] ?? ""));
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", reject);
    stream.on("close", () => {
      const data = Buffer.concat(chunks);
      let body = grpcMessage;
      if (grpcStatus === 0 && data.length >= 5) {
        try {
          body = toJsonString(method.output, fromBinary(method.output, data.subarray(5)));
        } catch {
          body = "(an answer that is no message)";
        }
      }
      resolve({ what: `gRPC ${method.name}`, httpStatus, grpcStatus, body });
    });
    stream.end(frame);
  });
}

/** What makes an answer a failure of the server rather than a refusal of the request. */
function serverFault(answer: Answer): boolean {
  if (answer.grpcStatus !== undefined) return SERVER_FAULTS.has(answer.grpcStatus);
  if (answer.httpStatus === 0) return true;
  // 503: unavailable, documented (a dependency down, a breaker open); 504: the client's own deadline passed;
  // 501: a method that does not exist here.
  return answer.httpStatus >= 500 && ![501, 503, 504].includes(answer.httpStatus);
}

const ok = (answer: Answer) => (answer.grpcStatus !== undefined ? answer.grpcStatus === 0 : answer.httpStatus >= 200 && answer.httpStatus < 300);

it(`survives ${SECONDS}s of random and malformed requests, changing nothing for any it refused (seed ${SEED})`, async () => {
  const started = new Date(Date.now() - 1000);
  const until = Date.now() + SECONDS * 1000;
  const faults: Answer[] = [];
  const acceptedIds = new Set<string>();
  const counts = { sent: 0, ok: 0 };
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, client) => {
      const fuzz = new FuzzInputs(seededRandom(SEED * 100 + client), known);
      let session = http2.connect(system.gatewayUrl);
      session.on("error", () => {});
      while (Date.now() < until) {
        if (session.closed || session.destroyed) {
          session = http2.connect(system.gatewayUrl);
          session.on("error", () => {});
        }
        const answer = await send(fuzz, session).catch((err: Error) => ({ what: "transport", httpStatus: 0, body: err.message }) as Answer);
        counts.sent++;
        if (answer.httpStatus === 0 && /ECONNRESET|socket hang up|other side closed|GOAWAY|stream/i.test(answer.body)) continue;
        if (serverFault(answer)) faults.push({ ...answer, body: answer.body.slice(0, 300) });
        if (ok(answer)) {
          counts.ok++;
          for (const id of answer.body.match(UUID) ?? []) acceptedIds.add(id);
        }
      }
      session.close();
    }),
  );
  if (process.env.FUZZ_SUMMARY === "1") {
    const kinds = new Map<string, number>();
    for (const f of faults) {
      const key = `${f.what.split(" ")[0]} ${f.httpStatus}/${f.grpcStatus ?? "-"} ${f.body.slice(0, 90)}`;
      kinds.set(key, (kinds.get(key) ?? 0) + 1);
    }
    process.stdout.write([...kinds].map(([k, n]) => `${n}\t${k}`).join("\n") + `\nsent ${counts.sent}, ok ${counts.ok}\n`);
  }
  expect({ seed: SEED, faults: faults.slice(0, 10) }).toEqual({ seed: SEED, faults: [] });
  expect(counts.sent).toBeGreaterThan(SECONDS * 20);

  // Every process is still up and serving.
  for (const p of Object.values(system.processes)) expect({ process: p.name, exitCode: p.child.exitCode }).toEqual({ process: p.name, exitCode: null });
  expect((await fetch(`${system.gatewayUrl}/readyz`)).status).toBe(200);

  // Nothing changed but what an answered-OK request made.
  const sql = postgres(system.database.url, { max: 1, onnotice: () => {} });
  try {
    const accounts = await sql<{ id: string }[]>`select id from account.accounts where created_at >= ${started} and kind = 'customer'`;
    expect(accounts.map((r) => r.id).filter((id) => !acceptedIds.has(id))).toEqual([]);
    const transfers = await sql<{ id: string; finalize: string | null }[]>`select id, finalize_ledger_id as finalize from transactions.transfers where created_at >= ${started}`;
    expect(transfers.map((r) => r.id).filter((id) => !acceptedIds.has(id))).toEqual([]);
    const ledgerIds = new Set([...acceptedIds, ...(await sql<{ finalize: string }[]>`select finalize_ledger_id as finalize from transactions.transfers where finalize_ledger_id is not null`).map((r) => r.finalize)]);
    const postings = await sql<{ id: string }[]>`select id from account.ledger_transfers where created_at >= ${started}`;
    expect(postings.map((r) => r.id).filter((id) => !ledgerIds.has(id))).toEqual([]);
  } finally {
    await sql.end();
  }
  const ledger = createServiceClient(LedgerService, `127.0.0.1:${system.processes.account.port}`, { defaultTimeoutMs: 30_000 });
  try {
    const report = await ledger.reconcile({});
    expect({ balanced: report.balanced, breaches: report.breaches.length }).toEqual({ balanced: true, breaches: 0 });
  } finally {
    ledger.close();
  }
}, (SECONDS + 120) * 1000);
