import { create, getOption, type DescField, type DescMethod, type Message } from "@bufbuild/protobuf";
import { http as httpRule } from "../../../gen/google/api/annotations_pb";
import { policy as policyOption, Role } from "../../../gen/tally/common/v1/policy_pb";
import { DomainError, ErrorReason } from "../../../platform/errors";
import { requireId } from "../../../platform/validation";
import type { OwnershipDirectory } from "./ownership";
import type { Principal } from "./principal";

/** What a method's policy option declares, read once. */
interface MethodAccess {
  roles: Set<Role>;
  /** For customers: the request field naming what they must own, and what kind of thing it names. */
  owned?: { field: DescField; kind: "account" | "transfer" | "customer" };
  /** A read (GET): a customer may read a transfer paid into their account, but only move money out of their own. */
  readOnly: boolean;
}

function kindOf(field: string): "account" | "transfer" | "customer" {
  if (field.endsWith("account_id")) return "account";
  if (field.endsWith("transfer_id")) return "transfer";
  if (field === "customer_id") return "customer";
  throw new Error(`owned_resource_field ${field} names nothing the gateway knows how to own`);
}

export function accessOf(method: DescMethod): MethodAccess {
  const declared = getOption(method, policyOption);
  const ownedName = declared?.ownedResourceField ?? "";
  const field = method.input.fields.find((f) => f.name === ownedName);
  if (ownedName !== "" && !field) throw new Error(`${method.parent.typeName}.${method.name}: owned_resource_field ${ownedName} is not a request field`);
  return {
    roles: new Set(declared?.roles ?? []),
    owned: field ? { field, kind: kindOf(ownedName) } : undefined,
    readOnly: getOption(method, httpRule)?.pattern.case === "get",
  };
}

const ROLE_NAMES = (roles: Set<Role>) => [...roles].map((r) => Role[r].toLowerCase()).join(", ") || "none";

/** Whether the principal may call the method in a role of the bank's (admins hold all), not only as a customer. */
export const allowedAsStaff = (principal: Principal, access: MethodAccess): boolean =>
  principal.roles.has(Role.ADMIN) || [...principal.roles].some((r) => r !== Role.CUSTOMER && access.roles.has(r));

/**
 * Checks a call against its method's policy: the principal must hold one of
 * the method's roles (admins hold all). A caller allowed only as a customer
 * must also own the resource the request names; another customer's account
 * or transfer is answered exactly as one that does not exist, so ids cannot
 * be probed. Returns the answer to give without calling the service, if any.
 */
export async function authorize(principal: Principal, method: DescMethod, access: MethodAccess, request: Message, directory: OwnershipDirectory, deadline: Date): Promise<Message | undefined> {
  if (allowedAsStaff(principal, access)) return undefined;
  if (!principal.roles.has(Role.CUSTOMER) || !access.roles.has(Role.CUSTOMER)) {
    throw new DomainError(ErrorReason.PERMISSION_DENIED, `${method.name} needs one of the roles: ${ROLE_NAMES(access.roles)}; the token holds ${ROLE_NAMES(principal.roles)}`);
  }
  if (!access.owned) return undefined;
  const { field, kind } = access.owned;
  const fields = request as unknown as Record<string, string>;
  const value = fields[field.localName];
  if (kind === "customer") {
    // A customer lists their own; another customer's list is as empty as a stranger's.
    if (value === "") fields[field.localName] = principal.customerId;
    else if (value !== principal.customerId) return create(method.output);
    return undefined;
  }
  const id = requireId(value, field.name);
  const owns = (accountId: string) => directory.accountOwner(accountId, deadline).then((owner) => owner === principal.customerId);
  if (kind === "account") {
    if (!(await owns(id))) throw new DomainError(ErrorReason.ACCOUNT_NOT_FOUND, `account ${id} not found`, field.name);
    return undefined;
  }
  const parties = await directory.transfer(id, deadline);
  if (!parties || !((await owns(parties.from)) || (access.readOnly && (await owns(parties.to))))) {
    throw new DomainError(ErrorReason.TRANSFER_NOT_FOUND, `transfer ${id} not found`, field.name);
  }
  return undefined;
}
