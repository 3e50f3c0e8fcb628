import type { RuleDraft } from "./rule-model";

/**
 * The rules a new installation starts with. Their ids are fixed, so replicas
 * seed them once; analysts change them through the RPCs like any other rule.
 * Amounts are minor units (for two-decimal currencies: 1,000,000.00 is 100000000).
 */
export const DEFAULT_RULES: readonly (RuleDraft & { id: string })[] = [
  {
    id: "0190c0de-0000-7000-8000-000000000001",
    name: "very large amount",
    description: "Declines any transfer of 1,000,000.00 or more.",
    kind: "assessment",
    expression: "transfer.amount >= 100000000",
    action: "decline",
    score: 100,
    priority: 10,
    enabled: true,
  },
  {
    id: "0190c0de-0000-7000-8000-000000000002",
    name: "large amount",
    description: "Sends transfers of 10,000.00 or more to review.",
    kind: "assessment",
    expression: "transfer.amount >= 1000000",
    action: "review",
    score: 50,
    priority: 20,
    enabled: true,
  },
  {
    id: "0190c0de-0000-7000-8000-000000000003",
    name: "velocity",
    description: "Sends to review a customer sending 10 transfers within a minute, or 100 within an hour.",
    kind: "assessment",
    expression: 'from_account.kind == "customer" && (profile.last_minute.debit_count >= 10 || profile.last_hour.debit_count >= 100)',
    action: "review",
    score: 50,
    priority: 30,
    enabled: true,
  },
  {
    id: "0190c0de-0000-7000-8000-000000000004",
    name: "young account, large amount",
    description: "Sends to review 1,000.00 or more leaving an account opened less than 7 days ago.",
    kind: "assessment",
    expression: 'from_account.kind == "customer" && from_account.age_days < 7 && transfer.amount >= 100000',
    action: "review",
    score: 50,
    priority: 40,
    enabled: true,
  },
  {
    id: "0190c0de-0000-7000-8000-000000000005",
    name: "blocked counterparty",
    description: "Declines money sent to a blocked account or customer: add their ids to the lists.",
    kind: "assessment",
    expression: "transfer.to_account_id in [] || to_account.customer_id in []",
    action: "decline",
    score: 100,
    priority: 0,
    enabled: true,
  },
  {
    id: "0190c0de-0000-7000-8000-000000000007",
    name: "account unknown to risk",
    description:
      "Sends to review a transfer touching an account risk could not learn of (its events not consumed yet, and the account service not answering in time): the rules that judge accounts cannot judge it.",
    kind: "assessment",
    expression: "!from_account.known || !to_account.known",
    action: "review",
    score: 50,
    priority: 5,
    enabled: true,
  },
  {
    id: "0190c0de-0000-7000-8000-000000000006",
    name: "burst of payments",
    description: "Raises an alert when a customer sends more than 20 transfers within a minute.",
    kind: "monitoring",
    expression: 'account.kind == "customer" && event.state == "posted" && profile.last_minute.debit_count > 20',
    action: "alert",
    score: 0,
    priority: 10,
    enabled: true,
  },
];

/** The shipped velocity rule: benchmarks and load tests turn it off, since their traffic would go to review. */
export const VELOCITY_RULE_ID = DEFAULT_RULES.find((r) => r.name === "velocity")!.id;
