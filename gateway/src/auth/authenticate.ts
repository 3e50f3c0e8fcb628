import { createRemoteJWKSet, errors, jwtVerify, type JWTVerifyGetKey } from "jose";
import { LRUCache } from "lru-cache";
import { DomainError, ErrorReason } from "../../../platform/errors";
import type { GatewayConfig } from "../config";
import { rolesFromClaim, type Principal } from "./principal";

export type Authenticate = (authorization: string | undefined) => Promise<Principal>;

// Asymmetric algorithms an identity provider signs with; a JWKS never verifies HS256 (or "none").
const JWKS_ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"];

// Verified tokens are remembered until they expire, and a minute at most (a key withdrawn from the
// JWKS stops counting soon), so a client sending the same token on every request is verified once.
const REMEMBERED_TOKENS = 10_000;
const REMEMBER_AT_MOST_MS = 60_000;
// The longest subject OpenID Connect allows.
const MAX_SUBJECT_LENGTH = 255;
// Half of a UTF-16 pair alone: JSON can carry it, but no text encodes it (nor can the services be told it).
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const refuse = (message: string) => new DomainError(ErrorReason.UNAUTHENTICATED, message);

function why(err: unknown): string {
  // Not the token's fault: the identity provider's keys could not be had.
  if (err instanceof errors.JWKSTimeout || !(err instanceof errors.JOSEError)) {
    throw new DomainError(ErrorReason.UNAVAILABLE, "the keys that verify tokens cannot be fetched now");
  }
  if (err instanceof errors.JWTExpired) return "the token has expired";
  if (err instanceof errors.JWTClaimValidationFailed) return `the token's ${err.claim} claim is not accepted`;
  if (err instanceof errors.JWSSignatureVerificationFailed) return "the token's signature does not verify";
  if (err instanceof errors.JOSEAlgNotAllowed) return "the token is signed with an algorithm that is not accepted";
  if (err instanceof errors.JWKSNoMatchingKey) return "the token is signed with an unknown key";
  return "the token is not a valid JWT";
}

/**
 * Verifies "Authorization: Bearer <JWT>" with jose: signature, algorithm,
 * issuer, audience and expiry. Development signs with a shared HS256 secret;
 * production names the identity provider's JWKS URL.
 */
export function createAuthenticator(config: Pick<GatewayConfig, "AUTH_JWKS_URL" | "AUTH_HS256_SECRET" | "AUTH_ISSUER" | "AUTH_AUDIENCE">): Authenticate {
  const jwks: JWTVerifyGetKey | undefined = config.AUTH_JWKS_URL ? createRemoteJWKSet(new URL(config.AUTH_JWKS_URL)) : undefined;
  const secret = new TextEncoder().encode(config.AUTH_HS256_SECRET ?? "");
  const options = { issuer: config.AUTH_ISSUER, audience: config.AUTH_AUDIENCE, algorithms: jwks ? JWKS_ALGORITHMS : ["HS256"], clockTolerance: 5, requiredClaims: ["sub", "exp"] };
  const verified = new LRUCache<string, Principal>({ max: REMEMBERED_TOKENS });
  return async (authorization) => {
    const [scheme, token, ...rest] = (authorization ?? "").trim().split(/\s+/);
    if (!authorization) throw refuse("a bearer token is required");
    if (scheme.toLowerCase() !== "bearer" || !token || rest.length > 0) throw refuse('the Authorization header must be "Bearer <token>"');
    const remembered = verified.get(token);
    if (remembered) return remembered;
    let payload;
    try {
      ({ payload } = jwks ? await jwtVerify(token, jwks, options) : await jwtVerify(token, secret, options));
    } catch (err) {
      throw refuse(why(err));
    }
    // Only the token's own claims count, never anything inherited.
    const claim = (name: string): unknown => (Object.hasOwn(payload, name) ? payload[name] : undefined);
    const subject = typeof claim("sub") === "string" ? (claim("sub") as string) : "";
    if (subject === "") throw refuse("the token names no subject");
    // OpenID Connect's bound: the subject names the caller's idempotency keys in the services' indexes.
    if (subject.length > MAX_SUBJECT_LENGTH) throw refuse(`the token's subject is longer than ${MAX_SUBJECT_LENGTH} characters`);
    if (LONE_SURROGATE.test(subject)) throw refuse("the token's subject is not well-formed text");
    // A customer_id the token gives but that names no one is refused, not read as the subject's accounts.
    const named = claim("customer_id");
    if (named !== undefined && (typeof named !== "string" || named === "")) throw refuse("the token's customer_id must be a non-empty string");
    const customerId = named ?? subject;
    const principal = { subject, roles: rolesFromClaim(claim("roles")), customerId };
    // Not a moment past its expiry (jose accepts a few seconds' skew; those it verifies each time).
    const ttl = Math.min(REMEMBER_AT_MOST_MS, (payload.exp ?? 0) * 1000 - Date.now());
    if (ttl > 0) verified.set(token, principal, { ttl });
    return principal;
  };
}
