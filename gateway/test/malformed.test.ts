import { startGatewayHarness, tokenFor, type GatewayHarness } from "./harness";
import { frame, rawGrpcCall } from "./raw-grpc";

// A request body the gateway cannot decode is the client's fault: INVALID_ARGUMENT on every protocol, never INTERNAL.
let h: GatewayHarness;
let token: string;

beforeAll(async () => {
  h = await startGatewayHarness();
  token = await tokenFor("admin");
});
afterAll(() => h.stop());

const PATH = "/tally.account.v1.AccountService/GetAccount";
// Field 1 (account_id), a string of two bytes that are not UTF-8.
const NOT_UTF8 = Uint8Array.from([0x0a, 0x02, 0xff, 0xfe]);
// Field 1 promising five bytes and giving one.
const TRUNCATED = Uint8Array.from([0x0a, 0x05, 0x61]);

const grpcCall = (body: Buffer) => rawGrpcCall(h.gateway.base, PATH, body, { authorization: `Bearer ${token}` });

describe.each([
  ["not UTF-8", NOT_UTF8],
  ["truncated", TRUNCATED],
])("protobuf that does not decode (%s)", (_, message) => {
  it("is INVALID_ARGUMENT over Connect (400)", async () => {
    const response = await fetch(`${h.gateway.base}${PATH}`, { method: "POST", headers: { "content-type": "application/proto", authorization: `Bearer ${token}` }, body: message });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/^parse binary: /) });
  });

  it("is INVALID_ARGUMENT over gRPC", async () => {
    expect(await grpcCall(frame(message))).toMatchObject({ status: "3", message: expect.stringMatching(/^parse binary: /) });
  });

  it("is INVALID_ARGUMENT over gRPC-Web", async () => {
    const response = await fetch(`${h.gateway.base}${PATH}`, { method: "POST", headers: { "content-type": "application/grpc-web+proto", authorization: `Bearer ${token}` }, body: frame(message) });
    const body = Buffer.from(await response.arrayBuffer());
    expect(body[0] & 0x80).toBe(0x80);
    const trailer = body.subarray(5, 5 + body.readUInt32BE(1)).toString();
    expect(trailer).toMatch(/^grpc-status: 3\r$/m);
    expect(trailer).toMatch(/^grpc-message: parse%20binary/m);
  });
});

it("a compressed frame without an encoding is INVALID_ARGUMENT over gRPC", async () => {
  expect(await grpcCall(frame(NOT_UTF8, 1))).toMatchObject({ status: "3" });
});

it("a request that decodes still gets its answer", async () => {
  const id = new TextEncoder().encode("00000000-0000-7000-8000-000000000000");
  const message = Uint8Array.from([0x0a, id.length, ...id]);
  expect(await grpcCall(frame(message))).toMatchObject({ status: "5" });
  const response = await fetch(`${h.gateway.base}${PATH}`, { method: "POST", headers: { "content-type": "application/proto", authorization: `Bearer ${token}` }, body: message });
  expect(response.status).toBe(404);
});
