import { status as Status } from "@grpc/grpc-js";
import { RuleAction, RuleKind } from "../../../gen/tally/risk/v1/risk_pb";
import { RiskDecision } from "../../../gen/tally/transactions/v1/transfer_pb";
import { newId } from "../../../platform/ids";
import { asCaller } from "../../../test/support/caller";
import { expectRpcError, openAccount, riskRows, transferToAssess } from "./fixtures";
import { startRiskHarness, type RiskHarness } from "./harness";

let h: RiskHarness;
beforeAll(async () => {
  h = await startRiskHarness();
});
afterAll(() => h.stop());

const rule = (overrides = {}) => ({
  name: "metadata flag",
  description: "flags transfers marked by the caller",
  kind: RuleKind.ASSESSMENT,
  expression: '"flag" in transfer.metadata && transfer.metadata["flag"] == "1"',
  action: RuleAction.REVIEW,
  priority: 5,
  enabled: true,
  ...overrides,
});

it("ships the default rules, enabled, at version 1", async () => {
  const { rules } = await h.risk.listRules({});
  const names = rules.map((r) => r.name);
  expect(names).toEqual(expect.arrayContaining(["very large amount", "large amount", "velocity", "young account, large amount", "blocked counterparty", "account unknown to risk", "burst of payments"]));
  expect(rules.every((r) => r.enabled && r.version === 1)).toBe(true);
});

it("creates, versions, disables and enables a rule, keeping every version for audit", async () => {
  const { rule: created } = await h.risk.createRule({ rule: rule() });
  expect([created!.version, created!.enabled]).toEqual([1, true]);
  const { rule: updated } = await h.risk.updateRule({ ruleId: created!.id, rule: rule({ expression: '"flag" in transfer.metadata && transfer.metadata["flag"] == "2"' }) });
  expect(updated!.version).toBe(2);
  const { rule: disabled } = await h.risk.disableRule({ ruleId: created!.id });
  expect([disabled!.version, disabled!.enabled]).toEqual([3, false]);
  expect((await h.risk.disableRule({ ruleId: created!.id })).rule!.version).toBe(3);
  const { rule: enabled } = await h.risk.enableRule({ ruleId: created!.id });
  expect([enabled!.version, enabled!.enabled]).toEqual([4, true]);

  const first = (await h.risk.getRule({ ruleId: created!.id, version: 1 })).rule!;
  expect(first.expression).toBe('"flag" in transfer.metadata && transfer.metadata["flag"] == "1"');
  expect((await h.risk.getRule({ ruleId: created!.id })).rule!.version).toBe(4);
  const { rules: history } = await h.risk.listRules({ includeHistory: true, pageSize: 500 });
  expect(history.filter((r) => r.id === created!.id).map((r) => r.version)).toEqual([1, 2, 3, 4]);
  const { rules: current } = await h.risk.listRules({ pageSize: 500 });
  expect(current.filter((r) => r.id === created!.id).map((r) => r.version)).toEqual([4]);
});

it("creates a rule once under a request id, even sent again at once, and refuses another rule under it", async () => {
  const requestId = newId();
  const draft = rule({ name: "once", enabled: false });
  const created = await Promise.all(Array.from({ length: 5 }, () => h.risk.createRule({ rule: draft, requestId })));
  expect(new Set(created.map((c) => c.rule!.id)).size).toBe(1);
  const { rules: all } = await h.risk.listRules({ pageSize: 500 });
  expect(all.filter((r) => r.name === "once")).toHaveLength(1);
  await expectRpcError(h.risk.createRule({ rule: { ...draft, priority: 6 }, requestId }), Status.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED", "request_id");
  // Each caller's request ids are its own: another caller's same id creates a rule of its own.
  const [mine, theirs] = await Promise.all([h.risk.createRule({ rule: draft, requestId }, asCaller("admin-1")), h.risk.createRule({ rule: draft, requestId }, asCaller("admin-2"))]);
  expect(new Set([created[0].rule!.id, mine.rule!.id, theirs.rule!.id]).size).toBe(3);
  expect((await h.risk.createRule({ rule: draft, requestId }, asCaller("admin-1"))).rule!.id).toBe(mine.rule!.id);
  // Without one, each call creates a rule.
  const [a, b] = [await h.risk.createRule({ rule: draft }), await h.risk.createRule({ rule: draft })];
  expect(a.rule!.id).not.toBe(b.rule!.id);
});

it("numbers concurrent changes to one rule one after another, losing none", async () => {
  const { rule: created } = await h.risk.createRule({ rule: rule({ name: "busy" }) });
  const changes = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      i % 2 === 0 ? h.risk.updateRule({ ruleId: created!.id, rule: rule({ name: "busy", priority: i }) }) : h.risk.disableRule({ ruleId: created!.id }),
    ),
  );
  const versions = changes.map((c) => c.rule!.version);
  expect(new Set(versions.filter((v, i) => i % 2 === 0)).size).toBe(10);
  const { rules: history } = await h.risk.listRules({ includeHistory: true, pageSize: 500 });
  const mine = history.filter((r) => r.id === created!.id).map((r) => r.version);
  expect(mine).toEqual(Array.from({ length: mine.length }, (_, i) => i + 1));
});

it("keeps a rule enabled or disabled across an update: EnableRule and DisableRule own that", async () => {
  const { rule: created } = await h.risk.createRule({ rule: rule({ name: "stays off" }) });
  await h.risk.disableRule({ ruleId: created!.id });
  const { rule: updated } = await h.risk.updateRule({ ruleId: created!.id, rule: rule({ name: "stays off", enabled: true, priority: 9 }) });
  expect([updated!.enabled, updated!.priority]).toEqual([false, 9]);
});

it("applies a change at once, and stops applying a disabled rule", async () => {
  const [a, b] = [await openAccount(h), await openAccount(h)];
  const assess = async () =>
    (await h.risk.assessTransfer({ transfer: transferToAssess(a.id, b.id, 10n, { metadata: { promo: "x" } }) })).assessment!.decision;
  expect(await assess()).toBe(RiskDecision.APPROVE);
  const { rule: created } = await h.risk.createRule({ rule: rule({ name: "promo", expression: '"promo" in transfer.metadata', action: RuleAction.DECLINE }) });
  expect(await assess()).toBe(RiskDecision.DECLINE);
  await h.risk.disableRule({ ruleId: created!.id });
  expect(await assess()).toBe(RiskDecision.APPROVE);
});

it("fails closed: a DECLINE rule that cannot be evaluated on a transfer sends it to review, with the rule and its error", async () => {
  const [a, b] = [await openAccount(h), await openAccount(h)];
  // Unguarded: a transfer without the key cannot be evaluated ("no such key"), which must not approve it.
  const { rule: created } = await h.risk.createRule({ rule: rule({ name: "kyc", expression: 'transfer.metadata["kyc"] != "verified"', action: RuleAction.DECLINE }) });
  try {
    const assess = async (metadata: Record<string, string>) => (await h.risk.assessTransfer({ transfer: transferToAssess(a.id, b.id, 10n, { metadata }) })).assessment!;
    expect((await assess({ kyc: "pending" })).decision).toBe(RiskDecision.DECLINE);
    expect((await assess({ kyc: "verified" })).decision).toBe(RiskDecision.APPROVE);
    const unknown = await assess({});
    expect(unknown.decision).toBe(RiskDecision.REVIEW);
    expect(unknown.hits.map((hit) => [hit.ruleName, hit.action, hit.score, hit.error])).toEqual([["kyc", RuleAction.DECLINE, 0, expect.stringContaining("kyc")]]);
    // An ADD_SCORE rule that cannot be evaluated adds nothing (it is counted and logged, not stored with each assessment).
    await h.risk.updateRule({ ruleId: created!.id, rule: rule({ name: "kyc", expression: 'transfer.metadata["kyc"] != "verified"', action: RuleAction.ADD_SCORE, score: 10 }) });
    const scored = await assess({});
    expect([scored.decision, scored.score, scored.hits]).toEqual([RiskDecision.APPROVE, 0, []]);
  } finally {
    await h.risk.disableRule({ ruleId: created!.id });
  }
});

it("pages through rules", async () => {
  const seen: string[] = [];
  let pageToken = "";
  do {
    const page = await h.risk.listRules({ pageSize: 2, pageToken, includeHistory: true });
    seen.push(...page.rules.map((r) => `${r.id}/${r.version}`));
    pageToken = page.nextPageToken;
  } while (pageToken);
  expect(new Set(seen).size).toBe(seen.length);
  expect(seen.length).toBe(await riskRows(h, "rules"));
});

describe("a rule that does not compile or type-check is refused with the reason and position", () => {
  const invalid: [string, string, number, number][] = [
    ["a syntax error", "transfer.amount >", 1, 18],
    ["an unknown field", "transfer.amout > 5", 1, 9],
    ["an unknown variable", "account.age_days < 7", 1, 1],
    ["a type mismatch", 'transfer.amount > "100"', 1, 17],
    ["a non-boolean result", "transfer.amount + 1", 1, 17],
    ["a second-line error", 'transfer.kind == "deposit" &&\n  transfer.nope', 2, 11],
  ];
  it.each(invalid)("%s", async (_name, expression, line, column) => {
    const before = await riskRows(h, "rules");
    const err = await expectRpcError(h.risk.createRule({ rule: rule({ expression }) }), Status.INVALID_ARGUMENT, "RULE_INVALID", "rule.expression");
    expect(err.metadata.line).toBe(String(line));
    expect(Number(err.metadata.column)).toBeGreaterThanOrEqual(1);
    expect(Math.abs(Number(err.metadata.column) - column)).toBeLessThanOrEqual(2);
    expect(await riskRows(h, "rules")).toBe(before);
  });

  it("including on update, which keeps the old version current", async () => {
    const { rule: created } = await h.risk.createRule({ rule: rule({ name: "kept" }) });
    await expectRpcError(h.risk.updateRule({ ruleId: created!.id, rule: rule({ expression: "nonsense(" }) }), Status.INVALID_ARGUMENT, "RULE_INVALID", "rule.expression");
    expect((await h.risk.getRule({ ruleId: created!.id })).rule!.version).toBe(1);
  });
});

describe("bad rule input changes nothing", () => {
  const bad: [string, () => Promise<unknown>, Status, string, string][] = [
    ["no rule", () => h.risk.createRule({}), Status.INVALID_ARGUMENT, "MISSING_FIELD", "rule"],
    ["no name", () => h.risk.createRule({ rule: rule({ name: " " }) }), Status.INVALID_ARGUMENT, "MISSING_FIELD", "rule.name"],
    ["no kind", () => h.risk.createRule({ rule: rule({ kind: RuleKind.UNSPECIFIED }) }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "rule.kind"],
    ["no action", () => h.risk.createRule({ rule: rule({ action: RuleAction.UNSPECIFIED }) }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "rule.action"],
    ["an action of the other kind", () => h.risk.createRule({ rule: rule({ action: RuleAction.FREEZE_ACCOUNT }) }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "rule.action"],
    ["add_score without a score", () => h.risk.createRule({ rule: rule({ action: RuleAction.ADD_SCORE, score: 0 }) }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "rule.score"],
    ["a score out of range", () => h.risk.createRule({ rule: rule({ action: RuleAction.ADD_SCORE, score: 5000 }) }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "rule.score"],
    ["an expression too long", () => h.risk.createRule({ rule: rule({ expression: `true${" && true".repeat(600)}` }) }), Status.INVALID_ARGUMENT, "RULE_INVALID", "rule.expression"],
    ["an unknown rule", () => h.risk.updateRule({ ruleId: newId(), rule: rule() }), Status.NOT_FOUND, "RULE_NOT_FOUND", "rule_id"],
    ["a malformed rule id", () => h.risk.enableRule({ ruleId: "r1" }), Status.INVALID_ARGUMENT, "INVALID_ID", "rule_id"],
    ["an unknown version", () => h.risk.getRule({ ruleId: "0190c0de-0000-7000-8000-000000000001", version: 99 }), Status.NOT_FOUND, "RULE_NOT_FOUND", "rule_id"],
    ["a NUL in the expression", () => h.risk.createRule({ rule: rule({ expression: 'transfer.kind == "\u0000"' }) }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "rule.expression"],
    [
      "a page token past the versions a rule can have",
      () => h.risk.listRules({ pageToken: Buffer.from(JSON.stringify({ id: newId(), version: "8589934592" })).toString("base64url") }),
      Status.INVALID_ARGUMENT,
      "INVALID_PAGE_TOKEN",
      "page_token",
    ],
  ];
  it.each(bad)("%s", async (_name, call, code, reason, field) => {
    const before = await riskRows(h, "rules");
    await expectRpcError(call(), code, reason, field);
    expect(await riskRows(h, "rules")).toBe(before);
  });

  it("refuses changing a rule's kind", async () => {
    const { rule: created } = await h.risk.createRule({ rule: rule({ name: "kind stays" }) });
    await expectRpcError(
      h.risk.updateRule({ ruleId: created!.id, rule: rule({ kind: RuleKind.MONITORING, action: RuleAction.ALERT }) }),
      Status.INVALID_ARGUMENT,
      "INVALID_FIELD",
      "rule.kind",
    );
  });
});

describe("TestRule", () => {
  it("evaluates an expression against a sample input without saving it", async () => {
    const before = await riskRows(h, "rules");
    const input = JSON.stringify({ transfer: { amount: "250000", kind: "transfer" }, from_account: { kind: "customer", ageDays: "2" } });
    const hit = await h.risk.testRule({ kind: RuleKind.ASSESSMENT, expression: "from_account.age_days < 7 && transfer.amount >= 100000", inputJson: input });
    expect([hit.valid, hit.issues, JSON.parse(hit.resultJson)]).toEqual([true, [], true]);
    const miss = await h.risk.testRule({ kind: RuleKind.ASSESSMENT, expression: "transfer.amount > 300000", inputJson: input });
    expect(JSON.parse(miss.resultJson)).toBe(false);
    const invalid = await h.risk.testRule({ kind: RuleKind.ASSESSMENT, expression: "transfer.nope", inputJson: input });
    expect(invalid.valid).toBe(false);
    expect(invalid.issues[0]).toMatchObject({ line: 1 });
    expect(await riskRows(h, "rules")).toBe(before);
  });

  it("refuses an unspecified kind", async () => {
    await expectRpcError(h.risk.testRule({ expression: "true" }), Status.INVALID_ARGUMENT, "INVALID_FIELD", "kind");
  });
});
