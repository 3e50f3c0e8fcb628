import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb";
import { DomainError, ErrorReason } from "../../platform/errors";
import { ERROR_DOMAIN, grpcCodeOf, RemoteError } from "../../platform/grpc/status";

/** Response headers that go with some errors, as HTTP clients expect them. */
function headersOf(err: DomainError): Record<string, string> {
  if (err.reason === ErrorReason.RATE_LIMITED && err.metadata.retry_after_seconds) return { "retry-after": err.metadata.retry_after_seconds };
  if (err.reason === ErrorReason.UNAUTHENTICATED) return { "www-authenticate": 'Bearer realm="tally"' };
  return {};
}

/**
 * An error as the client sees it, whatever its protocol: the same code,
 * message, reason (ErrorInfo) and fields (BadRequest) the service sent, and
 * when to retry (RetryInfo and Retry-After) where that is known.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (!(err instanceof DomainError)) return new ConnectError("internal error", Code.Internal);
  // gRPC status codes and Connect codes are the same numbers.
  const code = (err instanceof RemoteError ? err.code : grpcCodeOf(err.reason)) as number as Code;
  const details: ConstructorParameters<typeof ConnectError>[3] = [
    { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: err.reasonName, domain: ERROR_DOMAIN, metadata: err.metadata }) },
  ];
  if (err.violations.length > 0) details.push({ desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: err.violations }) });
  const retryAfter = Number(err.metadata.retry_after_seconds ?? 0);
  if (retryAfter > 0) details.push({ desc: RetryInfoSchema, value: create(RetryInfoSchema, { retryDelay: { seconds: BigInt(retryAfter) } }) });
  return new ConnectError(err.message, code, headersOf(err), details);
}
