import { execFile } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { status as Status } from "@grpc/grpc-js";
import { exportJWK, generateKeyPair, SignJWT, type KeyLike } from "jose";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb";
import { createServiceClient } from "../../platform/grpc/client";
import { projectRoot } from "../../platform/project-root";
import { expectRpcError, openAccount } from "../../services/transactions/test/fixtures";
import { bearer, grpcAuth, startGatewayFor, startGatewayHarness, TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET, tokenFor, type GatewayHarness } from "./harness";

let h: GatewayHarness;

beforeAll(async () => {
  h = await startGatewayHarness();
});
afterAll(() => h.stop());

const SYSTEM_ACCOUNT = "/v1/system-accounts/USD";
const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
const claims = { roles: ["teller"] };

/** A token signed some other way than the gateway accepts. */
const signed = (alg: string, key: KeyLike | Uint8Array, edit: (jwt: SignJWT) => SignJWT = (j) => j) =>
  edit(new SignJWT(claims).setProtectedHeader({ alg }).setIssuer(TEST_ISSUER).setAudience(TEST_AUDIENCE).setSubject("teller-1").setExpirationTime("1h")).sign(key);

async function get(base: string, path: string, authorization?: string) {
  const res = await fetch(`${base}${path}`, { headers: authorization === undefined ? {} : { authorization } });
  return { status: res.status, challenge: res.headers.get("www-authenticate"), body: (await res.json()) as { error?: { reason: string; message: string } } };
}

describe("bearer JWTs signed with the development HS256 secret", () => {
  it("lets a valid token through", async () => {
    expect((await get(h.gateway.base, SYSTEM_ACCOUNT, `Bearer ${await tokenFor("teller")}`)).status).toBe(200);
  });

  const secret = new TextEncoder().encode(TEST_SECRET);
  const signedWith = (payload: Record<string, unknown>) =>
    new SignJWT(payload).setProtectedHeader({ alg: "HS256" }).setIssuer(TEST_ISSUER).setAudience(TEST_AUDIENCE).setSubject("teller-1").setExpirationTime("1h").sign(secret);
  const refused: [string, () => Promise<string | undefined>][] = [
    ["no Authorization header", async () => undefined],
    ["another scheme", async () => `Basic ${Buffer.from("teller:secret").toString("base64")}`],
    ["a token that is not a JWT", async () => "Bearer not.a.jwt"],
    ["an expired token", async () => `Bearer ${await tokenFor("teller", undefined, { ttlSeconds: -60 })}`],
    ["a token signed with another secret", async () => `Bearer ${await tokenFor("teller", undefined, { secret: "some-other-secret-of-at-least-thirty-two-bytes" })}`],
    ["a token from another issuer", async () => `Bearer ${await tokenFor("teller", undefined, { issuer: "someone-else" })}`],
    ["a token for another audience", async () => `Bearer ${await tokenFor("teller", undefined, { audience: "another-api" })}`],
    ["a token signed with HS512", async () => `Bearer ${await signed("HS512", secret)}`],
    ["an unsigned token (alg none)", async () => `Bearer ${encode({ alg: "none" })}.${encode({ ...claims, iss: TEST_ISSUER, aud: TEST_AUDIENCE, sub: "teller-1", exp: Date.now() / 1000 + 3600 })}.`],
    ["an RS256 token", async () => `Bearer ${await signed("RS256", (await generateKeyPair("RS256")).privateKey)}`],
    ["a token without an expiry", async () => `Bearer ${await new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuer(TEST_ISSUER).setAudience(TEST_AUDIENCE).setSubject("t").sign(secret)}`],
    ["a token without a subject", async () => `Bearer ${await new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuer(TEST_ISSUER).setAudience(TEST_AUDIENCE).setExpirationTime("1h").sign(secret)}`],
    // Else read as the subject's own accounts.
    ["a token whose customer_id is empty", async () => `Bearer ${await signedWith({ ...claims, customer_id: "" })}`],
    ["a token whose customer_id is not a string", async () => `Bearer ${await signedWith({ ...claims, customer_id: 7 })}`],
    // OpenID Connect's bound; the subject names the caller's idempotency keys in the services' indexes.
    ["a token whose subject is longer than 255 characters", async () => `Bearer ${await tokenFor("teller", undefined, { subject: "s".repeat(256) })}`],
    ["a token whose subject is half a UTF-16 pair", async () => `Bearer ${await tokenFor("teller", undefined, { subject: "teller-\ud800" })}`],
  ];

  it("remembers a verified token only until it expires: past its expiry it is refused, though it was let through before", async () => {
    const token = `Bearer ${await tokenFor("teller", undefined, { ttlSeconds: 2 })}`;
    expect((await get(h.gateway.base, SYSTEM_ACCOUNT, token)).status).toBe(200);
    expect((await get(h.gateway.base, SYSTEM_ACCOUNT, token)).status).toBe(200);
    // Past its expiry and the few seconds of clock skew the verifier allows.
    await new Promise((r) => setTimeout(r, 8_000));
    const res = await get(h.gateway.base, SYSTEM_ACCOUNT, token);
    expect(res).toMatchObject({ status: 401, body: { error: { reason: "UNAUTHENTICATED", message: expect.stringContaining("expired") } } });
  }, 20_000);

  it.each(refused)("refuses %s as UNAUTHENTICATED (401 with a Bearer challenge)", async (_, authorization) => {
    const res = await get(h.gateway.base, SYSTEM_ACCOUNT, await authorization());
    expect(res).toMatchObject({ status: 401, challenge: 'Bearer realm="tally"', body: { error: { reason: "UNAUTHENTICATED" } } });
  });

  it("refuses the same way over gRPC and Connect", async () => {
    const expired = await tokenFor("teller", undefined, { ttlSeconds: -60 });
    const client = createServiceClient(AccountService, h.gateway.target, { defaultTimeoutMs: 10_000 });
    const err = await expectRpcError(client.getSystemAccount({ currency: "USD" }, grpcAuth(expired)), Status.UNAUTHENTICATED, "UNAUTHENTICATED");
    expect(err.message).toContain("expired");
    await expectRpcError(client.getSystemAccount({ currency: "USD" }), Status.UNAUTHENTICATED, "UNAUTHENTICATED");
    client.close();
    const connect = createClient(AccountService, createConnectTransport({ baseUrl: h.gateway.base, httpVersion: "1.1", interceptors: [bearer(expired)] }));
    const refusal = await connect.getSystemAccount({ currency: "USD" }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect([refusal?.code, refusal?.findDetails(ErrorInfoSchema)[0]?.reason]).toEqual([Code.Unauthenticated, "UNAUTHENTICATED"]);
  });

  it("authenticates a token with no known role, then denies it every method", async () => {
    const roleless = await tokenFor("teller", undefined, { roles: [] });
    expect(await get(h.gateway.base, SYSTEM_ACCOUNT, `Bearer ${roleless}`)).toMatchObject({ status: 403, body: { error: { reason: "PERMISSION_DENIED" } } });
  });
});

describe("the token CLI", () => {
  const mint = (...args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        ["-r", "@swc-node/register", "gateway/src/mint-token.ts", ...args],
        { cwd: projectRoot(), env: { ...process.env, AUTH_HS256_SECRET: TEST_SECRET, AUTH_ISSUER: TEST_ISSUER, AUTH_AUDIENCE: TEST_AUDIENCE } },
        (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout.trim())),
      ),
    );

  it("mints a token per role that the gateway accepts, a customer's bound to their accounts", async () => {
    const account = await openAccount(h, { customerId: "cli-customer" });
    const customer = await mint("customer", "--customer", "cli-customer");
    expect((await get(h.gateway.base, `/v1/accounts/${account.id}`, `Bearer ${customer}`)).status).toBe(200);
    expect((await get(h.gateway.base, SYSTEM_ACCOUNT, `Bearer ${customer}`)).status).toBe(403);
    expect((await get(h.gateway.base, SYSTEM_ACCOUNT, `Bearer ${await mint("teller")}`)).status).toBe(200);
    await expect(mint("wizard")).rejects.toThrow(/roles: customer, teller, analyst, admin, service/);
  });
});

describe("bearer JWTs verified against an identity provider's JWKS", () => {
  let jwks: http.Server;
  let gateway: Awaited<ReturnType<typeof startGatewayFor>>;
  let providerKey: KeyLike;

  beforeAll(async () => {
    const pair = await generateKeyPair("RS256");
    providerKey = pair.privateKey;
    const document = JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: "provider-1", alg: "RS256", use: "sig" }] });
    jwks = http.createServer((_, res) => res.writeHead(200, { "content-type": "application/json" }).end(document));
    await new Promise<void>((resolve) => jwks.listen(0, "127.0.0.1", resolve));
    gateway = await startGatewayFor(h, { AUTH_JWKS_URL: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/.well-known/jwks.json`, AUTH_ISSUER: "https://id.example", AUTH_AUDIENCE: "tally-prod" });
  });
  afterAll(async () => {
    await gateway.stop();
    jwks.close();
  });

  const providerToken = (key: KeyLike | Uint8Array, alg = "RS256", kid = "provider-1", issuer = "https://id.example") =>
    new SignJWT(claims).setProtectedHeader({ alg, kid }).setIssuer(issuer).setAudience("tally-prod").setSubject("teller-9").setExpirationTime("5m").sign(key);

  it("accepts a token the provider signed", async () => {
    expect((await get(gateway.base, SYSTEM_ACCOUNT, `Bearer ${await providerToken(providerKey)}`)).status).toBe(200);
  });

  it("refuses a token signed by another key, with the wrong issuer, or with a shared secret", async () => {
    const stranger = (await generateKeyPair("RS256")).privateKey;
    for (const token of [
      await providerToken(stranger),
      await providerToken(stranger, "RS256", "someone-else"),
      await providerToken(providerKey, "RS256", "provider-1", "https://not-the-provider.example"),
      await providerToken(new TextEncoder().encode(TEST_SECRET), "HS256"),
    ]) {
      expect(await get(gateway.base, SYSTEM_ACCOUNT, `Bearer ${token}`)).toMatchObject({ status: 401, body: { error: { reason: "UNAUTHENTICATED" } } });
    }
  });
});
