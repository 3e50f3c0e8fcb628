import { SignJWT } from "jose";
import type { GatewayConfig } from "../config";
import type { RoleName } from "./principal";

export interface TokenRequest {
  secret: string;
  issuer: string;
  audience: string;
  subject: string;
  roles: RoleName[];
  /** For customers: whose accounts the token reaches (the subject when absent). */
  customerId?: string;
  ttlSeconds?: number;
}

/** A locally signed HS256 token, as the development gateway accepts. */
export function mintToken(request: TokenRequest): Promise<string> {
  const claims = { roles: request.roles, ...(request.customerId ? { customer_id: request.customerId } : {}) };
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuer(request.issuer)
    .setAudience(request.audience)
    .setSubject(request.subject)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + (request.ttlSeconds ?? 3600))
    .sign(new TextEncoder().encode(request.secret));
}

/**
 * A token that a gateway with this configuration accepts: signed with its
 * HS256 secret, for its issuer and audience. None can be made for a gateway
 * that verifies against an identity provider's keys (AUTH_JWKS_URL).
 */
export function developmentToken(
  config: Pick<GatewayConfig, "AUTH_HS256_SECRET" | "AUTH_JWKS_URL" | "AUTH_ISSUER" | "AUTH_AUDIENCE">,
  role: RoleName,
  options: { subject?: string; customerId?: string; ttlSeconds?: number; roles?: RoleName[] } = {},
): Promise<string> {
  if (!config.AUTH_HS256_SECRET || config.AUTH_JWKS_URL) {
    throw new Error("this gateway verifies tokens against AUTH_JWKS_URL: tokens come from its identity provider");
  }
  return mintToken({
    secret: config.AUTH_HS256_SECRET,
    issuer: config.AUTH_ISSUER,
    audience: config.AUTH_AUDIENCE,
    subject: options.subject ?? options.customerId ?? `${role}-1`,
    roles: options.roles ?? [role],
    customerId: options.customerId,
    ttlSeconds: options.ttlSeconds,
  });
}
