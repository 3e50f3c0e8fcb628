import type { DescMethod, Message } from "@bufbuild/protobuf";
import { Metadata } from "@grpc/grpc-js";
import { AccountService, type GetBalanceRequest } from "../../gen/tally/account/v1/account_service_pb";
import { callerName } from "../../platform/caller";
import { DomainError, ErrorReason } from "../../platform/errors";
import { requireToken } from "../../platform/validation";
import type { Authenticate } from "./auth/authenticate";
import { accessOf, allowedAsStaff, authorize } from "./auth/authorize";
import { customerView } from "./auth/customer-view";
import type { OwnershipDirectory } from "./auth/ownership";
import type { Backends } from "./backends";
import type { BalanceReads } from "./balance-reads";
import type { RateLimiter } from "./rate-limit";

const getBalance = AccountService.method.getBalance;

/** What the gateway needs to know of an incoming call, whatever its protocol. */
export interface IncomingCall {
  header(name: string): string | undefined;
  /** The client's deadline, in milliseconds from now, if it named one. */
  timeoutMs: number | undefined;
  /** How the client called: grpc, grpc-web, connect or rest. */
  protocol: string;
}

/** Runs one public method for a client: the same steps on every protocol. */
export type Forward = (method: DescMethod, request: Message, call: IncomingCall) => Promise<Message>;

export interface ForwardOptions {
  defaultDeadlineMs: number;
  maxDeadlineMs: number;
}

/** The backend call's deadline: the client's, capped; the default when it names none. */
export function deadlineOf(timeoutMs: number | undefined, options: ForwardOptions): Date {
  const ms = timeoutMs === undefined ? options.defaultDeadlineMs : Math.min(Math.max(timeoutMs, 1), options.maxDeadlineMs);
  return new Date(Date.now() + ms);
}

// A batch item's request id is the key, a dot and its place (up to 999): within 128 characters.
const BATCH_KEY_LENGTH = 124;

/**
 * The Idempotency-Key header is the request id of a method that takes one; naming two different
 * ones is an error. In a batch (a list of requests that take one), each item without its own is
 * given the key and its place, so the batch sent again under the key is each item sent again.
 */
function applyIdempotencyKey(method: DescMethod, request: Message, key: string | undefined): void {
  if (key === undefined) return;
  const field = method.input.fields.find((f) => f.name === "request_id");
  if (field) {
    const fields = request as unknown as Record<string, string>;
    requireToken(key, "Idempotency-Key", 128);
    if (fields[field.localName] === "") fields[field.localName] = key;
    else if (fields[field.localName] !== key) {
      throw new DomainError(ErrorReason.INVALID_FIELD, "the Idempotency-Key header and request_id name different requests", "request_id");
    }
    return;
  }
  for (const list of method.input.fields) {
    if (list.fieldKind !== "list" || list.listKind !== "message") continue;
    const itemField = list.message.fields.find((f) => f.name === "request_id");
    if (!itemField) continue;
    requireToken(key, "Idempotency-Key", BATCH_KEY_LENGTH);
    const items = (request as unknown as Record<string, Record<string, string>[]>)[list.localName];
    const given = `${key}.`;
    items.forEach((item, index) => {
      const own = item[itemField.localName];
      if (own === "") item[itemField.localName] = `${given}${index}`;
      // Else two items could be one request: an item's own id among those the key gives.
      else if (own.startsWith(given) && /^\d+$/.test(own.slice(given.length))) {
        throw new DomainError(ErrorReason.INVALID_FIELD, "a request_id of the form <Idempotency-Key>.<n> is the key's, for items without one", `${list.name}[${index}].request_id`);
      }
    });
  }
}

/**
 * Authenticates the caller, spends one of their rate-limit tokens, checks the
 * method's policy (and, for customers, ownership), turns Idempotency-Key into
 * the request id, and calls the service with the client's capped deadline and
 * the caller's identity in `tally-principal`; a customer gets the answer as
 * customers see it (auth/customer-view.ts).
 */
export function createForwarder(deps: {
  backends: Backends;
  authenticate: Authenticate;
  limiter: RateLimiter;
  directory: OwnershipDirectory;
  balances: BalanceReads;
  options: ForwardOptions;
}): Forward {
  const accessTo = new Map(deps.backends.services.flatMap((s) => s.methods).map((m) => [m, accessOf(m)]));
  return async (method, request, call) => {
    const principal = await deps.authenticate(call.header("authorization"));
    deps.limiter.take(principal.subject);
    const deadline = deadlineOf(call.timeoutMs, deps.options);
    applyIdempotencyKey(method, request, call.header("idempotency-key"));
    const access = accessTo.get(method)!;
    const answer = await authorize(principal, method, access, request, deps.directory, deadline);
    if (answer) return answer;
    const metadata = new Metadata();
    metadata.set("tally-principal", callerName(principal.subject));
    const response =
      method === getBalance
        ? await deps.balances.read((request as GetBalanceRequest).accountId, deadline)
        : ((await deps.backends.callOf(method)(request, { deadline, metadata })) as Message);
    return allowedAsStaff(principal, access) ? response : customerView(method.output, response);
  };
}
