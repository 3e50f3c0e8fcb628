import { create, createRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import { anyPack, anyUnpack } from "@bufbuild/protobuf/wkt";
import { Metadata, status as Status, type ServiceError } from "@grpc/grpc-js";
import {
  BadRequestSchema,
  BadRequest_FieldViolationSchema,
  ErrorInfoSchema,
  file_google_rpc_error_details,
} from "../../gen/google/rpc/error_details_pb";
import { StatusSchema } from "../../gen/google/rpc/status_pb";
import { DomainError, ErrorReason, reasonFromName, reasonName } from "../errors";

/** The one place that decides which gRPC status each domain reason travels as. */
const CODE_OF_REASON: Partial<Record<ErrorReason, Status>> = {
  [ErrorReason.INVALID_FIELD]: Status.INVALID_ARGUMENT,
  [ErrorReason.MISSING_FIELD]: Status.INVALID_ARGUMENT,
  [ErrorReason.INVALID_ID]: Status.INVALID_ARGUMENT,
  [ErrorReason.UNKNOWN_CURRENCY]: Status.INVALID_ARGUMENT,
  [ErrorReason.AMOUNT_MUST_BE_POSITIVE]: Status.INVALID_ARGUMENT,
  [ErrorReason.AMOUNT_OUT_OF_RANGE]: Status.INVALID_ARGUMENT,
  [ErrorReason.ACCOUNTS_MUST_BE_DIFFERENT]: Status.INVALID_ARGUMENT,
  [ErrorReason.BATCH_EMPTY]: Status.INVALID_ARGUMENT,
  [ErrorReason.BATCH_TOO_LARGE]: Status.INVALID_ARGUMENT,
  [ErrorReason.INVALID_PAGE_TOKEN]: Status.INVALID_ARGUMENT,
  [ErrorReason.MALFORMED_REQUEST]: Status.INVALID_ARGUMENT,
  [ErrorReason.RULE_INVALID]: Status.INVALID_ARGUMENT,
  [ErrorReason.ACCOUNT_NOT_FOUND]: Status.NOT_FOUND,
  [ErrorReason.TRANSFER_NOT_FOUND]: Status.NOT_FOUND,
  [ErrorReason.PENDING_TRANSFER_NOT_FOUND]: Status.NOT_FOUND,
  [ErrorReason.RULE_NOT_FOUND]: Status.NOT_FOUND,
  [ErrorReason.REVIEW_NOT_FOUND]: Status.NOT_FOUND,
  [ErrorReason.ASSESSMENT_NOT_FOUND]: Status.NOT_FOUND,
  [ErrorReason.EXISTS_WITH_DIFFERENT_FIELDS]: Status.ALREADY_EXISTS,
  [ErrorReason.IDEMPOTENCY_KEY_REUSED]: Status.ALREADY_EXISTS,
  [ErrorReason.IDEMPOTENCY_KEY_IN_USE]: Status.ABORTED,
  [ErrorReason.UNAUTHENTICATED]: Status.UNAUTHENTICATED,
  [ErrorReason.PERMISSION_DENIED]: Status.PERMISSION_DENIED,
  [ErrorReason.RATE_LIMITED]: Status.RESOURCE_EXHAUSTED,
  [ErrorReason.REQUEST_TOO_LARGE]: Status.RESOURCE_EXHAUSTED,
  [ErrorReason.UNAVAILABLE]: Status.UNAVAILABLE,
  [ErrorReason.OVERLOADED]: Status.UNAVAILABLE,
  [ErrorReason.RISK_UNAVAILABLE]: Status.UNAVAILABLE,
  [ErrorReason.DEADLINE_EXCEEDED]: Status.DEADLINE_EXCEEDED,
  [ErrorReason.INTERNAL]: Status.INTERNAL,
};

/** Reasons not listed are broken business preconditions (frozen account, insufficient funds, …). */
export const grpcCodeOf = (reason: ErrorReason): Status => CODE_OF_REASON[reason] ?? Status.FAILED_PRECONDITION;

export const ERROR_DOMAIN = "tally";
const DETAILS_KEY = "grpc-status-details-bin";
const detailsRegistry = createRegistry(file_google_rpc_error_details);

// Errors travel in trailers: keep them small whatever input they describe.
const MAX_MESSAGE = 512;
const MAX_FIELD = 128;
const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/** A grpc-js error carrying google.rpc.Status with ErrorInfo and BadRequest details. */
export function toServiceError(err: DomainError, code = grpcCodeOf(err.reason)): Partial<ServiceError> {
  const message = clip(err.message, MAX_MESSAGE);
  const details = [
    anyPack(
      ErrorInfoSchema,
      create(ErrorInfoSchema, { reason: err.reasonName, domain: ERROR_DOMAIN, metadata: err.metadata }),
    ),
  ];
  if (err.violations.length > 0) {
    const fieldViolations = err.violations.map((v) =>
      create(BadRequest_FieldViolationSchema, { field: clip(v.field, MAX_FIELD), description: clip(v.description, MAX_MESSAGE) }),
    );
    details.push(anyPack(BadRequestSchema, create(BadRequestSchema, { fieldViolations })));
  }
  const metadata = new Metadata();
  const status = create(StatusSchema, { code, message, details });
  metadata.set(DETAILS_KEY, Buffer.from(toBinary(StatusSchema, status)));
  return { code, details: message, metadata };
}

/** An error from a peer, as a DomainError with its reason and fields, plus the gRPC code. */
export class RemoteError extends DomainError {
  override name = "RemoteError";
  constructor(
    readonly code: Status,
    reason: ErrorReason,
    message: string,
    violations: DomainError["violations"],
    metadata: Record<string, string>,
  ) {
    super(reason, message, violations, metadata);
  }
}

export function fromServiceError(err: ServiceError): RemoteError {
  let reason = fallbackReason(err.code);
  const violations: DomainError["violations"] = [];
  let metadata: Record<string, string> = {};
  const raw = err.metadata?.get(DETAILS_KEY)[0];
  if (raw instanceof Buffer) {
    try {
      const status = fromBinary(StatusSchema, raw);
      for (const any of status.details) {
        const detail = anyUnpack(any, detailsRegistry);
        if (detail?.$typeName === ErrorInfoSchema.typeName) {
          const info = detail as unknown as { reason: string; metadata: Record<string, string> };
          reason = reasonFromName(info.reason);
          metadata = { ...info.metadata };
        } else if (detail?.$typeName === BadRequestSchema.typeName) {
          const bad = detail as unknown as { fieldViolations: { field: string; description: string }[] };
          for (const v of bad.fieldViolations) violations.push({ field: v.field, description: v.description });
        }
      }
    } catch {
      // Details we cannot read leave the status code to speak for itself.
    }
  }
  return new RemoteError(err.code, reason, err.details || err.message, violations, metadata);
}

function fallbackReason(code: Status): ErrorReason {
  switch (code) {
    case Status.UNAVAILABLE:
      return ErrorReason.UNAVAILABLE;
    case Status.DEADLINE_EXCEEDED:
      return ErrorReason.DEADLINE_EXCEEDED;
    case Status.UNAUTHENTICATED:
      return ErrorReason.UNAUTHENTICATED;
    case Status.PERMISSION_DENIED:
      return ErrorReason.PERMISSION_DENIED;
    case Status.RESOURCE_EXHAUSTED:
      // Without details this comes from grpc-js itself: a message over the size limit.
      return ErrorReason.REQUEST_TOO_LARGE;
    default:
      return ErrorReason.INTERNAL;
  }
}

export { reasonName };
