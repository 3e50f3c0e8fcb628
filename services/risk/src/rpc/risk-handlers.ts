import { ReviewStatus, RuleKind, type Rule } from "../../../../gen/tally/risk/v1/risk_pb";
import type { RiskService } from "../../../../gen/tally/risk/v1/risk_service_pb";
import { callerDisplayName, callerOf } from "../../../../platform/caller";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import type { HandlersOf } from "../../../../platform/grpc/server";
import { requireId } from "../../../../platform/validation";
import type { Alerts } from "../domain/alerts";
import type { Assessor } from "../domain/assessor";
import type { Profiles } from "../domain/profiles";
import type { Reviews } from "../domain/reviews";
import { ACTION_BY_NAME, KIND_BY_NAME, nameOf, type RuleDraft, type RuleKindName } from "../domain/rule-model";
import type { RuleStore } from "../domain/rules";
import { ruleMessage } from "../proto";
import { testRule } from "../rules/compile";

export interface RiskDomain {
  assessor: Assessor;
  rules: RuleStore;
  reviews: Reviews;
  alerts: Alerts;
  profiles: Profiles;
}

/** Transfers one AssessTransfers call may carry: as many as a batch of transfers. */
export const MAX_ASSESSMENTS = 1000;

/** RiskService over gRPC: decode, call the domain, encode. */
export function riskHandlers(d: RiskDomain): HandlersOf<typeof RiskService> {
  return {
    async assessTransfer(req, ctx) {
      return { assessment: await d.assessor.assess(req.transfer, ctx.deadline) };
    },
    async assessTransfers(req, ctx) {
      if (req.transfers.length === 0) throw new DomainError(ErrorReason.BATCH_EMPTY, "transfers must not be empty", "transfers");
      if (req.transfers.length > MAX_ASSESSMENTS) throw new DomainError(ErrorReason.BATCH_TOO_LARGE, `at most ${MAX_ASSESSMENTS} transfers per call`, "transfers");
      const results = await d.assessor.assessMany(req.transfers, ctx.deadline);
      return {
        results: results.map((r, index) =>
          "error" in r ? { index, errorReason: r.error.reason, errorMessage: r.error.message, errorField: r.error.field ?? "" } : { index, assessment: r.assessment },
        ),
      };
    },
    async getAssessment(req) {
      return { assessment: await d.assessor.get(req.assessmentId) };
    },
    async createRule(req, ctx) {
      return { rule: ruleMessage(await d.rules.create(draftOf(req.rule), req.requestId, callerOf(ctx.metadata))) };
    },
    async updateRule(req) {
      return { rule: ruleMessage(await d.rules.update(req.ruleId, draftOf(req.rule))) };
    },
    async getRule(req) {
      return { rule: ruleMessage(await d.rules.get(req.ruleId, req.version)) };
    },
    async listRules(req) {
      const kind = req.kind === RuleKind.UNSPECIFIED ? undefined : kindOf(req.kind, "kind");
      const page = await d.rules.list(kind, req.includeHistory, req.pageSize, req.pageToken);
      return { rules: page.items.map(ruleMessage), nextPageToken: page.nextPageToken };
    },
    async enableRule(req) {
      return { rule: ruleMessage(await d.rules.setEnabled(req.ruleId, true)) };
    },
    async disableRule(req) {
      return { rule: ruleMessage(await d.rules.setEnabled(req.ruleId, false)) };
    },
    async testRule(req) {
      return testRule(kindOf(req.kind, "kind"), req.expression, req.inputJson);
    },
    async listReviews(req) {
      const status = req.status === ReviewStatus.UNSPECIFIED ? undefined : reviewStatusOf(req.status);
      const page = await d.reviews.list(status, req.accountId, req.pageSize, req.pageToken);
      return { reviews: page.items, nextPageToken: page.nextPageToken };
    },
    async getReview(req) {
      return { review: await d.reviews.get(req.reviewId) };
    },
    async resolveReview(req, ctx) {
      const resolution = req.resolution === ReviewStatus.APPROVED ? "approved" : req.resolution === ReviewStatus.DECLINED ? "declined" : undefined;
      // The gateway names the analyst; calls from inside name no one.
      const resolvedBy = callerDisplayName(callerOf(ctx.metadata)).slice(0, 255);
      return { review: await d.reviews.resolve(req.reviewId, resolution, req.note, resolvedBy) };
    },
    async listAlerts(req) {
      const page = await d.alerts.list(req.accountId, req.pageSize, req.pageToken);
      return { alerts: page.items, nextPageToken: page.nextPageToken };
    },
    async getRiskProfile(req) {
      return { profile: await d.profiles.profile(requireId(req.accountId, "account_id")) };
    },
  };
}

function kindOf(kind: RuleKind, field: string): RuleKindName {
  const name = nameOf(KIND_BY_NAME, kind);
  if (!name) throw new DomainError(ErrorReason.INVALID_FIELD, `${field} must be ASSESSMENT or MONITORING`, field);
  return name;
}

function reviewStatusOf(status: ReviewStatus) {
  if (status === ReviewStatus.OPEN) return "open" as const;
  if (status === ReviewStatus.APPROVED) return "approved" as const;
  if (status === ReviewStatus.DECLINED) return "declined" as const;
  throw new DomainError(ErrorReason.INVALID_FIELD, "status must be OPEN, APPROVED or DECLINED", "status");
}

function draftOf(rule: Rule | undefined): RuleDraft {
  if (!rule) throw new DomainError(ErrorReason.MISSING_FIELD, "rule is required", "rule");
  const action = nameOf(ACTION_BY_NAME, rule.action);
  if (!action) throw new DomainError(ErrorReason.INVALID_FIELD, "rule.action is required", "rule.action");
  return {
    name: rule.name,
    description: rule.description,
    kind: kindOf(rule.kind, "rule.kind"),
    expression: rule.expression,
    action,
    score: rule.score,
    priority: rule.priority,
    enabled: rule.enabled,
  };
}
