import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb";
import { DomainError } from "../../platform/errors";
import { ERROR_DOMAIN, grpcCodeOf, RemoteError } from "../../platform/grpc/status";

/**
 * A backend's error as the client sees it, whatever its protocol: the same
 * code, message, reason (ErrorInfo) and fields (BadRequest) the service sent.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (!(err instanceof DomainError)) return new ConnectError("internal error", Code.Internal);
  // gRPC status codes and Connect codes are the same numbers.
  const code = (err instanceof RemoteError ? err.code : grpcCodeOf(err.reason)) as number as Code;
  const details = [{ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: err.reasonName, domain: ERROR_DOMAIN, metadata: err.metadata }) }];
  if (err.violations.length > 0) {
    details.push({ desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: err.violations }) } as never);
  }
  return new ConnectError(err.message, code, undefined, details);
}
