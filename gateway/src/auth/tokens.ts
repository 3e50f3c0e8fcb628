import { SignJWT } from "jose";
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
