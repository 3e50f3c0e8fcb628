import { RuleAction, RuleKind } from "../../../../gen/tally/risk/v1/risk_pb";
import type { RuleRow } from "../db/schema";

/** Rules as the domain handles them, and their names in the shared model. */

export type { RuleKindName } from "../rules/compile";
export type RuleActionName = RuleRow["action"];

export interface RuleDraft {
  name: string;
  description: string;
  kind: RuleRow["kind"];
  expression: string;
  action: RuleActionName;
  score: number;
  priority: number;
  enabled: boolean;
}

export const KIND_BY_NAME: Record<RuleRow["kind"], RuleKind> = {
  assessment: RuleKind.ASSESSMENT,
  monitoring: RuleKind.MONITORING,
};

export const ACTION_BY_NAME: Record<RuleActionName, RuleAction> = {
  decline: RuleAction.DECLINE,
  review: RuleAction.REVIEW,
  add_score: RuleAction.ADD_SCORE,
  alert: RuleAction.ALERT,
  freeze_account: RuleAction.FREEZE_ACCOUNT,
};

/** Which actions each kind of rule may take. */
export const ACTIONS_OF_KIND: Record<RuleRow["kind"], readonly RuleActionName[]> = {
  assessment: ["decline", "review", "add_score"],
  monitoring: ["alert", "freeze_account"],
};

export const nameOf = <N extends string, V>(table: Record<N, V>, value: V): N | undefined =>
  (Object.entries(table) as [N, V][]).find(([, v]) => v === value)?.[0];
