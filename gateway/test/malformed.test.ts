import http2 from "node:http2";
import { startGatewayHarness, tokenFor, type GatewayHarness } from "./harness";

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

const frame = (message: Uint8Array, flags = 0) => {
  const bytes = Buffer.alloc(5 + message.length);
  bytes.writeUInt8(flags, 0);
  bytes.writeUInt32BE(message.length, 1);
  bytes.set(message, 5);
  return bytes;
};

function grpcCall(body: Buffer): Promise<{ status?: string; message?: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(h.gateway.base);
    const stream = session.request({ ":method": "POST", ":path": PATH, "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${token}` });
    let result: { status?: string; message?: string } = {};
    stream.on("response", (headers) => headers["grpc-status"] !== undefined && (result = { status: String(headers["grpc-status"]), message: String(headers["grpc-message"]) }));
    stream.on("trailers", (trailers) => (result = { status: String(trailers["grpc-status"]), message: decodeURIComponent(String(trailers["grpc-message"] ?? "")) }));
    stream.on("error", reject);
    stream.on("close", () => {
      session.close();
      resolve(result);
    });
    stream.resume();
    stream.end(body);
  });
}

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
