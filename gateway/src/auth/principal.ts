import { Role } from "../../../gen/tally/common/v1/policy_pb";

/** Who is calling, as their verified token says. */
export interface Principal {
  /** The token's subject: a person or a system, used for rate limits and audit. */
  subject: string;
  roles: Set<Role>;
  /** Whose accounts a customer may reach: the token's customer_id claim, else its subject. */
  customerId: string;
}

/** Role names as tokens carry them: the enum's names without the prefix, lower case ("teller"). */
export const ROLE_NAMES = ["customer", "teller", "analyst", "admin", "service"] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

export const roleOf = (name: RoleName): Role => Role[name.toUpperCase() as Uppercase<RoleName>];

export function rolesFromClaim(claim: unknown): Set<Role> {
  const names = Array.isArray(claim) ? claim : typeof claim === "string" ? [claim] : [];
  return new Set(names.filter((n): n is RoleName => ROLE_NAMES.includes(n as RoleName)).map(roleOf));
}
