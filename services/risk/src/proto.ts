import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  AlertSchema,
  AlertSeverity,
  AssessmentSchema,
  ReviewSchema,
  ReviewStatus,
  RuleHitSchema,
  RuleSchema,
  type Alert,
  type Assessment,
  type Review,
  type Rule,
  type RuleHit,
} from "../../../gen/tally/risk/v1/risk_pb";
import { RiskDecision, TransferSchema } from "../../../gen/tally/transactions/v1/transfer_pb";
import type { AlertRow, AssessmentRow, ReviewRow, RuleRow, StoredHit } from "./db/schema";
import { ACTION_BY_NAME, KIND_BY_NAME } from "./domain/rule-model";

/** Conversions between the risk service's rows and the shared Protobuf model. */

export const DECISION = { approve: RiskDecision.APPROVE, review: RiskDecision.REVIEW, decline: RiskDecision.DECLINE } as const;
export const REVIEW_STATUS = { open: ReviewStatus.OPEN, approved: ReviewStatus.APPROVED, declined: ReviewStatus.DECLINED } as const;
const SEVERITY = { low: AlertSeverity.LOW, medium: AlertSeverity.MEDIUM, high: AlertSeverity.HIGH } as const;

export function ruleMessage(row: RuleRow): Rule {
  return create(RuleSchema, {
    id: row.id,
    version: row.version,
    name: row.name,
    description: row.description,
    kind: KIND_BY_NAME[row.kind],
    expression: row.expression,
    action: ACTION_BY_NAME[row.action],
    score: row.score,
    priority: row.priority,
    enabled: row.enabled,
    createdAt: timestampFromDate(row.createdAt),
    updatedAt: timestampFromDate(row.updatedAt),
  });
}

export const hitMessage = (hit: StoredHit): RuleHit =>
  create(RuleHitSchema, {
    ruleId: hit.ruleId,
    ruleVersion: hit.ruleVersion,
    ruleName: hit.ruleName,
    action: ACTION_BY_NAME[hit.action],
    score: hit.score,
    error: hit.error ?? "",
  });

const transferOf = (json: unknown) => fromJson(TransferSchema, json as JsonValue, { ignoreUnknownFields: true });

export function assessmentMessage(row: AssessmentRow): Assessment {
  return create(AssessmentSchema, {
    id: row.id,
    transferId: row.transferId,
    decision: DECISION[row.decision],
    score: row.score,
    hits: row.hits.map(hitMessage),
    transfer: transferOf(row.transfer),
    createdAt: timestampFromDate(row.createdAt),
    durationMicros: row.durationMicros,
  });
}

export function reviewMessage(row: ReviewRow): Review {
  return create(ReviewSchema, {
    id: row.id,
    transferId: row.transferId,
    assessmentId: row.assessmentId,
    status: REVIEW_STATUS[row.status],
    hits: row.hits.map(hitMessage),
    transfer: transferOf(row.transfer),
    note: row.note,
    resolvedBy: row.resolvedBy,
    createdAt: timestampFromDate(row.createdAt),
    resolvedAt: row.resolvedAt ? timestampFromDate(row.resolvedAt) : undefined,
  });
}

export function alertMessage(row: AlertRow): Alert {
  return create(AlertSchema, {
    id: row.id,
    ruleId: row.ruleId,
    ruleVersion: row.ruleVersion,
    accountId: row.accountId,
    severity: SEVERITY[row.severity],
    message: row.message,
    eventId: row.eventId,
    accountFrozen: row.accountFrozen,
    createdAt: timestampFromDate(row.createdAt),
  });
}
