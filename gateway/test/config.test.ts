import { DEVELOPMENT_SECRET, gatewayConfig } from "../src/config";

// What production must give anyway, so each case below fails only on the secret.
const PRODUCTION = { TALLY_ENV: "production", HTTP_HOST: "0.0.0.0", ACCOUNT_SERVICE_URL: "a:1", TRANSACTIONS_SERVICE_URL: "t:1", RISK_SERVICE_URL: "r:1", AUTH_ISSUER: "i", AUTH_AUDIENCE: "a" };
const OWN_SECRET = "a-secret-of-this-deployment-only-32-bytes-long";

describe("the gateway's token secret", () => {
  it("is the development secret by default, outside production, so `npm start` works at once", () => {
    expect(gatewayConfig({}).AUTH_HS256_SECRET).toBe(DEVELOPMENT_SECRET);
  });

  it.each([
    ["TALLY_ENV=production", PRODUCTION],
    ["NODE_ENV=production, as the container image sets", { NODE_ENV: "production" }],
  ])("is never the published development secret under %s, by default or given outright", (_, env: Record<string, string>) => {
    expect(() => gatewayConfig(env)).toThrow("AUTH_JWKS_URL or AUTH_HS256_SECRET must be set");
    expect(() => gatewayConfig({ ...env, AUTH_HS256_SECRET: DEVELOPMENT_SECRET })).toThrow("published development secret");
    expect(gatewayConfig({ ...env, AUTH_HS256_SECRET: OWN_SECRET }).AUTH_HS256_SECRET).toBe(OWN_SECRET);
    expect(gatewayConfig({ ...env, AUTH_JWKS_URL: "https://idp.example/jwks" }).AUTH_HS256_SECRET).toBeUndefined();
  });

  it("is the development secret in a production build only when a local trial asks for it outright", () => {
    expect(gatewayConfig({ NODE_ENV: "production", AUTH_ALLOW_DEVELOPMENT_SECRET: "true" }).AUTH_HS256_SECRET).toBe(DEVELOPMENT_SECRET);
    expect(() => gatewayConfig({ NODE_ENV: "production", AUTH_ALLOW_DEVELOPMENT_SECRET: "false" })).toThrow("must be set");
  });
});
