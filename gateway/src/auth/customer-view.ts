import { create, type DescMessage, type Message } from "@bufbuild/protobuf";
import { AccountSchema, type Account } from "../../../gen/tally/account/v1/account_pb";
import { RiskOutcomeSchema, TransferSchema, type Transfer } from "../../../gen/tally/transactions/v1/transfer_pb";
import { ErrorReason } from "../../../platform/errors";

/**
 * What stays with the bank when a customer (the payer, or a payee reading a transfer paid to them)
 * reads an answer: the fraud rules a transfer met, its score, and the ids of its assessment and
 * review (risk's decision itself, and whether a fallback made it, they see); an analyst's note on
 * a declined review; and who froze an account and why.
 */
const REDACTED: Record<string, (message: never) => void> = {
  [TransferSchema.typeName]: (transfer: Transfer) => {
    if (transfer.risk) transfer.risk = create(RiskOutcomeSchema, { decision: transfer.risk.decision, fallback: transfer.risk.fallback });
    if (transfer.failureReason === ErrorReason.RISK_DECLINED) transfer.failureMessage = "declined by risk";
  },
  [AccountSchema.typeName]: (account: Account) => {
    account.statusReason = "";
  },
};

/** Whether a message of this type holds, anywhere within it, one of the messages a customer sees less of. */
const holdsRedacted = new Map<string, boolean>();
function holds(desc: DescMessage): boolean {
  let known = holdsRedacted.get(desc.typeName);
  if (known === undefined) holdsRedacted.set(desc.typeName, (known = reaches(desc, new Set())));
  return known;
}

function reaches(desc: DescMessage, seen: Set<string>): boolean {
  if (desc.typeName in REDACTED) return true;
  if (seen.has(desc.typeName)) return false;
  seen.add(desc.typeName);
  return desc.fields.some((f) => f.message !== undefined && reaches(f.message, seen));
}

/** The answer as a customer may see it; changed in place (each answer is the caller's own copy). */
export function customerView(desc: DescMessage, message: Message): Message {
  if (holds(desc)) redact(desc, message as unknown as Record<string, unknown>);
  return message;
}

function redact(desc: DescMessage, message: Record<string, unknown>): void {
  REDACTED[desc.typeName]?.(message as never);
  for (const field of desc.fields) {
    if (!field.message || !holds(field.message)) continue;
    const oneof = field.oneof ? (message[field.oneof.localName] as { case?: string; value?: unknown }) : undefined;
    const value = oneof ? (oneof.case === field.localName ? oneof.value : undefined) : message[field.localName];
    if (value === undefined) continue;
    const items = field.fieldKind === "list" ? (value as unknown[]) : field.fieldKind === "map" ? Object.values(value as object) : [value];
    for (const item of items) redact(field.message, item as Record<string, unknown>);
  }
}
