import type { Interceptor } from "@connectrpc/connect";
import { Metadata } from "@grpc/grpc-js";
import { Lifecycle } from "../../platform/lifecycle";
import { testLogger } from "../../test/support/infra";
import { startTransactionsHarness, type HarnessOptions, type TransactionsHarness } from "../../services/transactions/test/harness";
import type { RoleName } from "../src/auth/principal";
import { mintToken, type TokenRequest } from "../src/auth/tokens";
import { gatewayConfig } from "../src/config";
import { startGateway } from "../src/gateway";

export const TEST_SECRET = "gateway-test-secret-of-at-least-thirty-two-bytes";
export const TEST_ISSUER = "tally-test";
export const TEST_AUDIENCE = "tally-test-api";

/** A token the test gateway accepts (unless the overrides spoil it). */
export const tokenFor = (role: RoleName, customerId?: string, overrides: Partial<TokenRequest> = {}) =>
  mintToken({ secret: TEST_SECRET, issuer: TEST_ISSUER, audience: TEST_AUDIENCE, subject: customerId ?? `${role}-1`, roles: [role], customerId, ...overrides });

/** Connect clients send the token in a header on every call. */
export const bearer =
  (token: string): Interceptor =>
  (next) =>
  (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };

/** grpc-js clients send it as metadata. */
export function grpcAuth(token: string): { metadata: Metadata } {
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return { metadata };
}

export interface GatewayUnderTest {
  port: number;
  target: string;
  base: string;
  stop(): Promise<void>;
}

/** A gateway in this process in front of the harness's services; env overrides its configuration. */
export async function startGatewayFor(h: TransactionsHarness, env: Record<string, string> = {}): Promise<GatewayUnderTest> {
  const lifecycle = new Lifecycle(testLogger());
  const config = gatewayConfig({
    HTTP_HOST: "127.0.0.1",
    HTTP_PORT: "0",
    LOG_LEVEL: "silent",
    SHUTDOWN_GRACE_MS: "500",
    ACCOUNT_SERVICE_URL: h.accountTarget,
    TRANSACTIONS_SERVICE_URL: `127.0.0.1:${h.service.port}`,
    RISK_SERVICE_URL: h.env.RISK_SERVICE_URL,
    AUTH_HS256_SECRET: TEST_SECRET,
    AUTH_ISSUER: TEST_ISSUER,
    AUTH_AUDIENCE: TEST_AUDIENCE,
    RATE_LIMIT_PER_SECOND: "10000",
    RATE_LIMIT_BURST: "10000",
    ...env,
  });
  const { port } = await startGateway(config, testLogger(), lifecycle);
  const target = `127.0.0.1:${port}`;
  return { port, target, base: `${env.TLS_CERT_FILE ? "https" : "http"}://${target}`, stop: () => lifecycle.stop("test done") };
}

/** The three services and a gateway in front of them. */
export async function startGatewayHarness(env: Record<string, string> = {}, options: HarnessOptions = {}) {
  // Risk's answer, not its fallback, even on a loaded test machine: these tests are about the gateway.
  const h = await startTransactionsHarness({ ...options, transactionsEnv: { RISK_DEADLINE_MS: "5000", ...options.transactionsEnv } });
  const gateway = await startGatewayFor(h, env);
  return {
    ...h,
    gateway,
    async stop() {
      await gateway.stop();
      await h.stop();
    },
  };
}

export type GatewayHarness = Awaited<ReturnType<typeof startGatewayHarness>>;
