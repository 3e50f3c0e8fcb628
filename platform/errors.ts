import { ErrorReason } from "../gen/tally/common/v1/errors_pb";

export { ErrorReason };

export interface FieldViolation {
  field: string;
  description: string;
}

/**
 * A failure the caller can act on: a machine-readable reason, a message for
 * people and, where the input was at fault, the fields concerned. Domain code
 * throws these; platform/grpc/status.ts turns them into a gRPC status.
 */
export class DomainError extends Error {
  override name = "DomainError";
  readonly violations: FieldViolation[];

  constructor(
    readonly reason: ErrorReason,
    message: string,
    violations: FieldViolation[] | string = [],
    readonly metadata: Record<string, string> = {},
  ) {
    super(message);
    this.violations = typeof violations === "string" ? [{ field: violations, description: message }] : violations;
  }

  /** The reason as it appears on the wire, e.g. "INSUFFICIENT_FUNDS". */
  get reasonName(): string {
    return reasonName(this.reason);
  }

  get field(): string | undefined {
    return this.violations[0]?.field;
  }
}

// protobuf-es drops the enum's ERROR_REASON_ prefix from its TypeScript names.
export const reasonName = (reason: ErrorReason): string => ErrorReason[reason] ?? "UNSPECIFIED";

export function reasonFromName(name: string): ErrorReason {
  const value = (ErrorReason as unknown as Record<string, ErrorReason | undefined>)[name];
  return typeof value === "number" ? value : ErrorReason.UNSPECIFIED;
}
