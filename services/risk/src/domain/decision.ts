import type { StoredHit } from "../db/schema";

export type DecisionName = "approve" | "review" | "decline";

export interface Thresholds {
  reviewScore: number;
  declineScore: number;
}

/**
 * A DECLINE rule that fires declines; else a REVIEW rule that fires, or a
 * DECLINE or REVIEW rule that could not be evaluated, sends to review (a
 * broken rule fails closed, to a person); else the ADD_SCORE rules' scores
 * are summed against the thresholds. The score reported is the sum over
 * every rule that fired.
 */
export function decide(hits: StoredHit[], thresholds: Thresholds): { decision: DecisionName; score: number } {
  const score = hits.reduce((sum, h) => sum + h.score, 0);
  if (hits.some((h) => h.action === "decline" && !h.error)) return { decision: "decline", score };
  if (hits.some((h) => h.action === "review" || h.action === "decline")) return { decision: "review", score };
  const added = hits.filter((h) => h.action === "add_score").reduce((sum, h) => sum + h.score, 0);
  if (added >= thresholds.declineScore) return { decision: "decline", score };
  if (added >= thresholds.reviewScore) return { decision: "review", score };
  return { decision: "approve", score };
}
