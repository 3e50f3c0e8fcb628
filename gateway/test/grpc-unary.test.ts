import http2 from "node:http2";
import { gunzipSync, gzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { GetAccountRequestSchema, GetAccountResponseSchema } from "../../gen/tally/account/v1/account_service_pb";
import { newId } from "../../platform/ids";
import { openAccount } from "../../services/transactions/test/fixtures";
import { status as Status } from "@grpc/grpc-js";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { createServiceClient, type ClientOf } from "../../platform/grpc/client";
import { grpcAuth, startGatewayHarness, tokenFor, type GatewayHarness } from "./harness";
import { frame, rawGrpcCall } from "./raw-grpc";

// gRPC calls with binary protobuf are served by the gateway's own path (grpc-unary.ts); the same call
// compressed, or in JSON, by connect-es. A client must not be able to tell the two apart.
let h: GatewayHarness;
let auth: Record<string, string>;
/** A grpc-js client of the gateway, as services and most clients call it. */
let viaGateway: ClientOf<typeof AccountService>;
let asAdmin: ReturnType<typeof grpcAuth>;

beforeAll(async () => {
  h = await startGatewayHarness({ MAX_REQUEST_BYTES: "1024" });
  const token = await tokenFor("admin");
  auth = { authorization: `Bearer ${token}` };
  asAdmin = grpcAuth(token);
  viaGateway = createServiceClient(AccountService, h.gateway.target, { defaultTimeoutMs: 10_000 });
});
afterAll(async () => {
  viaGateway.close();
  await h.stop();
});

const PATH = "/tally.account.v1.AccountService/GetAccount";
const getAccount = (accountId: string) => toBinary(GetAccountRequestSchema, create(GetAccountRequestSchema, { accountId }));
const call = (body: Buffer, headers: Record<string, string> = {}) => rawGrpcCall(h.gateway.base, PATH, body, { ...auth, ...headers });
/** A body, enveloped already, sent as connect-es serves it: under grpc-encoding gzip. */
const throughConnect = (body: Buffer) => call(body, { "grpc-encoding": "gzip" });
/** The same call as connect-es serves it: gzip-compressed. */
const compressed = (message: Uint8Array) => throughConnect(frame(gzipSync(message), 1));

describe("a gRPC call", () => {
  it("gets the answer connect-es gives, as application/grpc+proto with status 0", async () => {
    const account = await openAccount(h);
    const own = await call(frame(getAccount(account.id)));
    const theirs = await compressed(getAccount(account.id));
    expect(own).toMatchObject({ contentType: "application/grpc+proto", status: "0" });
    expect(theirs).toMatchObject({ contentType: "application/grpc+proto", status: "0" });
    const answer = (body: Buffer) => fromBinary(GetAccountResponseSchema, body.subarray(5, 5 + body.readUInt32BE(1)));
    expect(answer(own.body).account?.id).toBe(account.id);
    expect(answer(own.body)).toEqual(answer(theirs.body));
  });

  it("gets the error connect-es gives: status, message and details (reason) in the trailers", async () => {
    const missing = newId();
    const own = await call(frame(getAccount(missing)));
    const theirs = await compressed(getAccount(missing));
    expect(own).toMatchObject({ status: "5", message: `account ${missing} not found` });
    expect(own.details).toBeDefined();
    // connect-es answers a compressed request compressed (grpc-encoding gzip): all else is the same.
    expect({ ...own, body: undefined }).toEqual({ ...theirs, body: undefined, encoding: undefined });
    expect(own.body.length).toBe(0);
  });

  it("without a token is UNAUTHENTICATED, as through connect-es", async () => {
    const own = await rawGrpcCall(h.gateway.base, PATH, frame(getAccount(newId())), {});
    const theirs = await rawGrpcCall(h.gateway.base, PATH, frame(gzipSync(getAccount(newId())), 1), { "grpc-encoding": "gzip" });
    expect(own).toMatchObject({ status: "16" });
    expect({ ...own, body: undefined }).toEqual({ ...theirs, body: undefined, encoding: undefined });
  });

  it("keeps the client's deadline: one that has passed before the service answers is DEADLINE_EXCEEDED", async () => {
    const account = await openAccount(h);
    expect(await call(frame(getAccount(account.id)), { "grpc-timeout": "1n" })).toMatchObject({ status: "4" });
    expect(await call(frame(getAccount(account.id)), { "grpc-timeout": "30S" })).toMatchObject({ status: "0" });
  });

  it("counts the deadline from the call's arrival: a request whose body outlasts it is DEADLINE_EXCEEDED", async () => {
    const account = await openAccount(h);
    const slowBody = (timeout: string) => rawGrpcCall(h.gateway.base, PATH, frame(getAccount(account.id)), { ...auth, "grpc-timeout": timeout }, 400);
    expect(await slowBody("200m")).toMatchObject({ status: "4" });
    expect(await slowBody("30S")).toMatchObject({ status: "0" });
  });
});

describe("an answer to a client that accepts gzip (as grpc-js clients do)", () => {
  const ACCEPT = { "grpc-accept-encoding": "identity,deflate,gzip" };
  const message = (body: Buffer) => {
    const bytes = body.subarray(5, 5 + body.readUInt32BE(1));
    return fromBinary(GetAccountResponseSchema, body[0] === 1 ? gunzipSync(bytes) : bytes);
  };
  // Metadata enough to make the answer larger than 1 KiB.
  const large = () => h.accounts.createAccount({ requestId: newId(), customerId: "c-large", currency: "USD", metadata: { a: "x".repeat(500), b: "y".repeat(500), c: "z".repeat(500) } });

  it("of 1 KiB or more is gzip-compressed, as connect-es compresses it, and grpc-js reads it", async () => {
    const { account } = await large();
    const own = await call(frame(getAccount(account!.id)), ACCEPT);
    const theirs = await rawGrpcCall(h.gateway.base, PATH, frame(gzipSync(getAccount(account!.id)), 1), { ...auth, ...ACCEPT, "grpc-encoding": "gzip" });
    expect(own).toMatchObject({ status: "0", encoding: "gzip" });
    expect(theirs).toMatchObject({ status: "0", encoding: "gzip" });
    expect(own.body[0]).toBe(1);
    expect(own.body.length).toBeLessThan(1024);
    expect(message(own.body)).toEqual(message(theirs.body));
    expect(message(own.body).account?.metadata.a).toBe("x".repeat(500));
    const read = await viaGateway.getAccount({ accountId: account!.id }, asAdmin);
    expect(read.account?.metadata).toEqual(account!.metadata);
  });

  it("smaller than 1 KiB is sent as it is, under the same grpc-encoding connect-es names", async () => {
    const account = await openAccount(h);
    const own = await call(frame(getAccount(account.id)), ACCEPT);
    expect(own).toMatchObject({ status: "0", encoding: "gzip" });
    expect(own.body[0]).toBe(0);
    expect(message(own.body).account?.id).toBe(account.id);
  });

  it("is never compressed for a client that does not say it accepts gzip", async () => {
    const { account } = await large();
    const own = await call(frame(getAccount(account!.id)));
    expect(own).toMatchObject({ status: "0", encoding: undefined });
    expect(own.body[0]).toBe(0);
    expect(message(own.body).account?.metadata.b).toBe("y".repeat(500));
  });
});

describe("a gRPC request that is not a well-formed unary call gets the answer connect-es gives it", () => {
  const id = newId();
  const message = getAccount(id);
  const packed = gzipSync(message);
  // The same mistake in a compressed request, which connect-es serves.
  it.each([
    ["no message", Buffer.alloc(0), Buffer.alloc(0), "12"],
    ["two messages", Buffer.concat([frame(message), frame(message)]), Buffer.concat([frame(packed, 1), frame(packed, 1)]), "12"],
    ["a cut header", frame(message).subarray(0, 3), frame(packed, 1).subarray(0, 3), "3"],
    ["a message and stray bytes", Buffer.concat([frame(message), Buffer.from([0, 0, 0])]), Buffer.concat([frame(packed, 1), Buffer.from([0, 0, 0])]), "3"],
    ["a message and a cut second one", Buffer.concat([frame(message), frame(message).subarray(0, 9)]), Buffer.concat([frame(packed, 1), frame(packed, 1).subarray(0, 9)]), "3"],
    ["a message that does not parse, then another", Buffer.concat([frame(Buffer.from([0xff, 0xff])), frame(message)]), Buffer.concat([frame(gzipSync(Buffer.from([0xff, 0xff])), 1), frame(packed, 1)]), "3"],
    ["a cut envelope", frame(message).subarray(0, 12), frame(packed, 1).subarray(0, 12), "3"],
  ])("%s", async (_, own, theirs, status) => {
    const answer = await call(own);
    expect(answer).toMatchObject({ status, body: Buffer.alloc(0) });
    expect(answer).toEqual({ ...(await throughConnect(theirs)), encoding: undefined });
  });

  it("flags beyond the compressed bit are passed over, as connect-es passes them over", async () => {
    const own = await call(frame(message, 0x02));
    expect(own).toMatchObject({ status: "5", message: `account ${id} not found` });
    expect(own).toEqual({ ...(await throughConnect(frame(packed, 0x03))), encoding: undefined });
  });

  it("a compressed message without grpc-encoding is INVALID_ARGUMENT", async () => {
    expect(await call(frame(packed, 1))).toMatchObject({ status: "3", message: expect.stringMatching(/compressed/) });
  });

  it("a grpc-timeout that is not one", async () => {
    expect(await call(frame(getAccount(newId())), { "grpc-timeout": "soon" })).toMatchObject({ status: "3", message: expect.stringMatching(/grpc timeout/) });
  });
});

it("a request larger than MAX_REQUEST_BYTES is RESOURCE_EXHAUSTED", async () => {
  expect(await call(frame(getAccount("x".repeat(2000))))).toMatchObject({ status: "8", message: expect.stringMatching(/larger than/) });
});

it("a grpc-js client sending a request larger than MAX_REQUEST_BYTES gets RESOURCE_EXHAUSTED, and the gateway serves on", async () => {
  await expect(viaGateway.getAccount({ accountId: "x".repeat(100_000) }, asAdmin)).rejects.toMatchObject({ code: Status.RESOURCE_EXHAUSTED });
  const account = await openAccount(h);
  expect((await viaGateway.getAccount({ accountId: account.id }, asAdmin)).account?.id).toBe(account.id);
});

it("a client still sending a request refused as too large gets the refusal, then is asked to stop sending (RST_STREAM NO_ERROR)", async () => {
  const session = http2.connect(h.gateway.base);
  const stream = session.request({ ":method": "POST", ":path": PATH, "content-type": "application/grpc", te: "trailers", ...auth });
  stream.on("error", () => {});
  let status: string | undefined;
  stream.on("trailers", (t) => (status = String(t["grpc-status"])));
  stream.resume();
  // An envelope announcing 10 MiB, sent a chunk at a time until the stream closes or 5 s have passed.
  const chunk = Buffer.alloc(16 * 1024);
  stream.write(Buffer.from([0, 0, 0xa0, 0, 0]));
  let sentAll = false;
  const sending = (async () => {
    for (let i = 0; i < 500 && !stream.closed; i++) {
      stream.write(chunk);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    sentAll = !stream.closed;
    stream.end();
  })();
  const rstCode = await new Promise<number>((resolve) => stream.on("close", () => resolve(stream.rstCode ?? -1)));
  await sending;
  session.close();
  expect(status).toBe("8");
  expect(sentAll).toBe(false);
  expect(rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
});

it("a client that gives up in the middle of its request leaves the gateway serving", async () => {
  const session = http2.connect(h.gateway.base);
  const stream = session.request({ ":method": "POST", ":path": PATH, "content-type": "application/grpc", te: "trailers", ...auth });
  stream.on("error", () => {});
  stream.write(frame(getAccount(newId())).subarray(0, 8));
  await new Promise((resolve) => setTimeout(resolve, 50));
  stream.close(http2.constants.NGHTTP2_CANCEL);
  session.close();
  const account = await openAccount(h);
  expect(await call(frame(getAccount(account.id)))).toMatchObject({ status: "0" });
});
