import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  AccountFactsSchema,
  EventFactsSchema,
  RiskProfileSchema,
  TransferFactsSchema,
  WindowStatsSchema,
} from "../../../../gen/tally/risk/v1/risk_pb";
import { DEFAULT_RULES } from "../domain/default-rules";
import {
  MAX_EXPRESSION_LENGTH,
  compileRule,
  parseRuleInput,
  testRule,
  type AssessmentInput,
  type CompiledRule,
  type MonitoringInput,
  type RuleKindName,
} from "./compile";

function compiled(kind: RuleKindName, expression: string): CompiledRule {
  const { rule, issues } = compileRule(kind, expression);
  expect(issues).toEqual([]);
  if (rule === undefined) throw new Error(`${expression} did not compile`);
  return rule;
}

interface Facts {
  transfer?: MessageInitShape<typeof TransferFactsSchema>;
  from?: MessageInitShape<typeof AccountFactsSchema>;
  to?: MessageInitShape<typeof AccountFactsSchema>;
  profile?: MessageInitShape<typeof RiskProfileSchema>;
}

const assessment = (facts: Facts = {}): AssessmentInput => ({
  transfer: create(TransferFactsSchema, { kind: "transfer", amount: 100n, currency: "USD", ...facts.transfer }),
  from_account: create(AccountFactsSchema, { kind: "customer", status: "active", known: true, ...facts.from }),
  to_account: create(AccountFactsSchema, { kind: "customer", status: "active", known: true, ...facts.to }),
  profile: create(RiskProfileSchema, facts.profile),
});

const window = (debitCount: bigint) => create(WindowStatsSchema, { debitCount });

const matches = (rule: CompiledRule, input: AssessmentInput | MonitoringInput) => rule.evaluate(input);

describe("compileRule", () => {
  describe("the rules we ship", () => {
    it.each(DEFAULT_RULES.map((r) => [r.name, r.kind, r.expression] as const))("%s compiles", (_name, kind, expression) => {
      expect(compileRule(kind, expression).issues).toEqual([]);
    });

    it("very large amount", () => {
      const rule = compiled("assessment", "transfer.amount >= 100000000");
      expect(matches(rule, assessment({ transfer: { amount: 100_000_000n } }))).toEqual({ matched: true });
      expect(matches(rule, assessment({ transfer: { amount: 99_999_999n } }))).toEqual({ matched: false });
    });

    it("large amount", () => {
      const rule = compiled("assessment", "transfer.amount >= 1000000");
      expect(matches(rule, assessment({ transfer: { amount: 1_000_000n } }))).toEqual({ matched: true });
      expect(matches(rule, assessment({ transfer: { amount: 999_999n } }))).toEqual({ matched: false });
    });

    it("velocity", () => {
      const rule = compiled(
        "assessment",
        'from_account.kind == "customer" && (profile.last_minute.debit_count >= 10 || profile.last_hour.debit_count >= 100)',
      );
      expect(matches(rule, assessment({ profile: { lastMinute: window(10n) } }))).toEqual({ matched: true });
      expect(matches(rule, assessment({ profile: { lastHour: window(100n) } }))).toEqual({ matched: true });
      expect(matches(rule, assessment({ profile: { lastMinute: window(9n), lastHour: window(99n) } }))).toEqual({ matched: false });
      // Unset windows read as zero counts.
      expect(matches(rule, assessment())).toEqual({ matched: false });
      expect(matches(rule, assessment({ from: { kind: "settlement" }, profile: { lastMinute: window(50n) } }))).toEqual({ matched: false });
    });

    it.each([
      'from_account.kind == "customer" && profile.account_age_days < 7 && transfer.amount >= 100000',
      'from_account.kind == "customer" && from_account.age_days < 7 && transfer.amount >= 100000',
    ])("young account, large amount: %s", (expression) => {
      const rule = compiled("assessment", expression);
      const young = { accountAgeDays: 3n };
      expect(matches(rule, assessment({ transfer: { amount: 100_000n }, from: { ageDays: 3n }, profile: young }))).toEqual({ matched: true });
      expect(matches(rule, assessment({ transfer: { amount: 99_999n }, from: { ageDays: 3n }, profile: young }))).toEqual({ matched: false });
      expect(matches(rule, assessment({ transfer: { amount: 100_000n }, from: { ageDays: 7n }, profile: { accountAgeDays: 7n } }))).toEqual({
        matched: false,
      });
    });

    it("blocked counterparty, with the empty lists and with filled ones", () => {
      expect(matches(compiled("assessment", "transfer.to_account_id in [] || to_account.customer_id in []"), assessment())).toEqual({
        matched: false,
      });
      const rule = compiled("assessment", 'transfer.to_account_id in ["acc-9"] || to_account.customer_id in ["cus-9"]');
      expect(matches(rule, assessment({ transfer: { toAccountId: "acc-9" } }))).toEqual({ matched: true });
      expect(matches(rule, assessment({ to: { customerId: "cus-9" } }))).toEqual({ matched: true });
      expect(matches(rule, assessment({ transfer: { toAccountId: "acc-1" }, to: { customerId: "cus-1" } }))).toEqual({ matched: false });
    });

    it("burst of payments (monitoring)", () => {
      const rule = compiled("monitoring", 'account.kind == "customer" && event.state == "posted" && profile.last_minute.debit_count > 20');
      const event = create(EventFactsSchema, { type: "transfers_posted", amount: 5n, state: "posted" });
      const account = create(AccountFactsSchema, { kind: "customer" });
      expect(matches(rule, { event, account, profile: create(RiskProfileSchema, { lastMinute: window(21n) }) })).toEqual({ matched: true });
      expect(matches(rule, { event, account, profile: create(RiskProfileSchema, { lastMinute: window(20n) }) })).toEqual({ matched: false });
      const bank = create(AccountFactsSchema, { kind: "settlement" });
      expect(matches(rule, { event, account: bank, profile: create(RiskProfileSchema, { lastMinute: window(50n) }) })).toEqual({ matched: false });
    });
  });

  it("reads metadata by index, by selection, with in and with has()", () => {
    const input = assessment({ transfer: { metadata: { channel: "web" } } });
    for (const expression of [
      'transfer.metadata["channel"] == "web"',
      'transfer.metadata.channel == "web"',
      '"channel" in transfer.metadata',
      "has(transfer.metadata.channel)",
      "!has(transfer.metadata.other) && !(\"other\" in transfer.metadata)",
    ]) {
      expect([expression, compiled("assessment", expression).evaluate(input)]).toEqual([expression, { matched: true }]);
    }
  });

  it("evaluates macros and string functions", () => {
    const input = assessment({ transfer: { kind: "Deposit", metadata: { a: "1", b: "22" } } });
    for (const expression of [
      "transfer.metadata.all(k, transfer.metadata[k].size() <= 2)",
      'transfer.metadata.exists(k, transfer.metadata[k] == "22")',
      'transfer.metadata.exists_one(k, k.startsWith("a"))',
      "transfer.metadata.filter(k, transfer.metadata[k].size() == 2).size() == 1",
      '"a=1" in transfer.metadata.map(k, k + "=" + transfer.metadata[k])',
      'transfer.kind.lowerAscii() == "deposit" && transfer.kind.upperAscii().endsWith("SIT")',
      'transfer.kind.matches("^[A-Z]") && transfer.kind.contains("pos")',
    ]) {
      expect([expression, compiled("assessment", expression).evaluate(input)]).toEqual([expression, { matched: true }]);
    }
  });

  it("compares timestamps and durations", () => {
    const rule = compiled("assessment", 'timestamp("2026-01-10T00:00:00Z") - profile.opened_at < duration("168h")');
    const openedAt = (iso: string) => ({ profile: { openedAt: timestampFromDate(new Date(iso)) } });
    expect(rule.evaluate(assessment(openedAt("2026-01-05T00:00:00Z")))).toEqual({ matched: true });
    expect(rule.evaluate(assessment(openedAt("2025-12-01T00:00:00Z")))).toEqual({ matched: false });
  });

  it("is reusable across inputs", () => {
    const rule = compiled("assessment", "transfer.amount > 10");
    expect(rule.kind).toBe("assessment");
    expect(rule.expression).toBe("transfer.amount > 10");
    const results = [5n, 50n, 1n, 11n].map((amount) => rule.evaluate(assessment({ transfer: { amount } })));
    expect(results).toEqual([{ matched: false }, { matched: true }, { matched: false }, { matched: true }]);
  });

  it("returns run-time failures as errors instead of throwing", () => {
    const missing = compiled("assessment", 'transfer.metadata["missing"] == "x"');
    expect(missing.evaluate(assessment())).toEqual({ error: expect.stringContaining("missing") });
    expect(compiled("assessment", "transfer.amount / 0 > 1").evaluate(assessment())).toEqual({ error: expect.stringContaining("divide by zero") });
    // dyn() hides the type from the checker; the run-time result is still not a bool.
    expect(compiled("assessment", "dyn(transfer.amount)").evaluate(assessment())).toEqual({ error: "the rule evaluated to int, not bool" });
    // An input of the wrong kind lacks the variables.
    const monitoringInput: MonitoringInput = { event: create(EventFactsSchema), account: create(AccountFactsSchema), profile: create(RiskProfileSchema) };
    expect(compiled("assessment", "transfer.amount > 1").evaluate(monitoringInput)).toHaveProperty("error");
  });

  it("refuses empty and whitespace-only expressions", () => {
    expect(compileRule("assessment", "")).toEqual({ rule: undefined, issues: [{ message: "the expression is empty", line: 1, column: 1 }] });
    expect(compileRule("assessment", " \n\t ").issues).toEqual([{ message: "the expression is empty", line: 1, column: 1 }]);
  });

  it("refuses expressions longer than MAX_EXPRESSION_LENGTH", () => {
    const longest = "true" + " ".repeat(MAX_EXPRESSION_LENGTH - 4);
    expect(compileRule("assessment", longest).issues).toEqual([]);
    expect(compileRule("assessment", longest + " ").issues).toEqual([
      { message: `the expression is ${MAX_EXPRESSION_LENGTH + 1} characters long; at most 4096 are allowed`, line: 1, column: 1 },
    ]);
  });

  it("reports parse errors with their line and column", () => {
    expect(compileRule("assessment", "transfer.amount > > 1")).toEqual({
      rule: undefined,
      issues: [{ message: "syntax error: found > but expecting end of input", line: 1, column: 17 }],
    });
    expect(compileRule("assessment", "transfer.amount > 1 &&\n   transfer.kind = 'a'").issues).toEqual([
      { message: "syntax error: found = but expecting end of input", line: 2, column: 18 },
    ]);
  });

  it("reports checker issues with their line and column", () => {
    const cases: [string, { message: string; line: number; column: number }][] = [
      ["transfer.amount + 1", { message: "a rule must evaluate to bool, but this expression is int", line: 1, column: 17 }],
      ["transfr.amount > 1", { message: "undeclared reference to 'transfr'; did you mean 'transfer'?", line: 1, column: 1 }],
      ["transfer.amout > 1", { message: "no field 'amout' on tally.risk.v1.TransferFacts; did you mean 'amount'?", line: 1, column: 9 }],
      ['transfer.amount > "100"', { message: "'>' cannot compare int with string", line: 1, column: 17 }],
      ["transfer.kind == 3", { message: "'==' cannot compare string with int", line: 1, column: 15 }],
      ["lookup(transfer.kind)", { message: "unknown function 'lookup'", line: 1, column: 1 }],
      [
        'transfer.amount > 1 &&\n  profile.last_minute.debit_cnt > 2 ||\n  transfer.kind == "x"',
        { message: "no field 'debit_cnt' on tally.risk.v1.WindowStats; did you mean 'debit_count'?", line: 2, column: 22 },
      ],
    ];
    for (const [expression, issue] of cases) {
      expect([expression, compileRule("assessment", expression)]).toEqual([expression, { rule: undefined, issues: [issue] }]);
    }
  });

  it("gives each kind its own variables", () => {
    expect(compileRule("monitoring", 'event.state == "posted" && event.amount >= 1000 && profile.last_hour.debit_sum > 0').issues).toEqual([]);
    expect(compileRule("monitoring", "transfer.amount > 1").issues).toEqual([{ message: "undeclared reference to 'transfer'", line: 1, column: 1 }]);
    expect(compileRule("assessment", "event.amount > 1").issues).toEqual([{ message: "undeclared reference to 'event'", line: 1, column: 1 }]);
  });
});

describe("parseRuleInput", () => {
  it("reads proto3 JSON, in proto or JSON field names, with Timestamps and int64 strings", () => {
    const json = JSON.stringify({
      transfer: { kind: "deposit", amount: "2500", to_account_id: "acc-1", metadata: { channel: "web" } },
      from_account: { kind: "customer", ageDays: 3, known: true },
      profile: { opened_at: "2026-01-01T00:00:00Z", lastMinute: { debit_count: "4" } },
    });
    const { input, issues } = parseRuleInput("assessment", json);
    expect(issues).toEqual([]);
    const facts = input as AssessmentInput;
    expect(facts.transfer.amount).toBe(2500n);
    expect(facts.transfer.toAccountId).toBe("acc-1");
    expect(facts.transfer.metadata).toEqual({ channel: "web" });
    expect(facts.from_account.ageDays).toBe(3n);
    expect(facts.profile.openedAt?.seconds).toBe(BigInt(Date.parse("2026-01-01T00:00:00Z") / 1000));
    expect(facts.profile.lastMinute?.debitCount).toBe(4n);
    // Left out: a zero-valued message.
    expect(facts.to_account).toEqual(create(AccountFactsSchema));
  });

  it("makes every variable zero-valued for an empty object or a blank input", () => {
    for (const json of ["{}", "", "  "]) {
      const { input, issues } = parseRuleInput("monitoring", json);
      expect(issues).toEqual([]);
      expect(input).toEqual({ event: create(EventFactsSchema), account: create(AccountFactsSchema), profile: create(RiskProfileSchema) });
    }
  });

  it("reports malformed JSON", () => {
    const { input, issues } = parseRuleInput("assessment", '{"transfer": ');
    expect(input).toBeUndefined();
    expect(issues).toEqual([{ message: expect.stringMatching(/^the input is not valid JSON: /), line: 0, column: 0 }]);
  });

  it("reports input that is not an object", () => {
    for (const json of ["[]", "null", "42", '"x"']) {
      expect(parseRuleInput("monitoring", json).issues).toEqual([
        { message: "the input must be a JSON object with the variables event, account, profile", line: 0, column: 0 },
      ]);
    }
  });

  it("reports unknown variables", () => {
    expect(parseRuleInput("monitoring", '{"event": {}, "transfer": {}}').issues).toEqual([
      { message: "unknown variable 'transfer'; monitoring rules see event, account, profile", line: 0, column: 0 },
    ]);
  });

  it("reports values that are not the variable's message", () => {
    const { input, issues } = parseRuleInput(
      "assessment",
      JSON.stringify({ transfer: { amount: "lots" }, from_account: { nickname: "x" }, profile: { opened_at: "yesterday" } }),
    );
    expect(input).toBeUndefined();
    expect(issues.map((i) => i.message)).toEqual([
      expect.stringMatching(/^transfer: .*amount/),
      expect.stringMatching(/^from_account: .*nickname/),
      expect.stringMatching(/^profile: .*Timestamp/),
    ]);
    expect(issues.every((i) => i.line === 0 && i.column === 0)).toBe(true);
  });
});

describe("testRule", () => {
  const input = JSON.stringify({ transfer: { amount: "150000000", metadata: { channel: "web" } } });

  it("returns the result as JSON", () => {
    expect(testRule("assessment", "transfer.amount >= 100000000", input)).toEqual({ valid: true, issues: [], resultJson: "true" });
    expect(testRule("assessment", 'transfer.metadata.channel == "app"', input)).toEqual({ valid: true, issues: [], resultJson: "false" });
    expect(testRule("monitoring", "profile.last_minute.debit_count > 20", "{}")).toEqual({ valid: true, issues: [], resultJson: "false" });
  });

  it("returns a run-time error as JSON", () => {
    const result = testRule("assessment", 'transfer.metadata["missing"] == "x"', input);
    expect(result.valid).toBe(true);
    expect(result.issues).toEqual([]);
    expect(JSON.parse(result.resultJson)).toEqual({ error: expect.stringContaining("missing") });
  });

  it("is not valid, and evaluates nothing, when the expression has issues", () => {
    expect(testRule("assessment", "transfer.amount + 1", input)).toEqual({
      valid: false,
      issues: [{ message: "a rule must evaluate to bool, but this expression is int", line: 1, column: 17 }],
      resultJson: "",
    });
    expect(testRule("assessment", "transfer.amount >", input).valid).toBe(false);
  });

  it("is valid but evaluates nothing when the input has issues", () => {
    expect(testRule("assessment", "transfer.amount > 1", "{nope")).toEqual({
      valid: true,
      issues: [{ message: expect.stringMatching(/^the input is not valid JSON/), line: 0, column: 0 }],
      resultJson: "",
    });
    expect(testRule("assessment", "transfer.amount > 1", '{"event": {}}')).toEqual({
      valid: true,
      issues: [{ message: "unknown variable 'event'; assessment rules see transfer, from_account, to_account, profile", line: 0, column: 0 }],
      resultJson: "",
    });
  });
});
