import { createRegistry } from "@bufbuild/protobuf";
import { celEnv, objectType, parse } from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import {
  AccountFactsSchema,
  EventFactsSchema,
  RiskProfileSchema,
  TransferFactsSchema,
  file_tally_risk_v1_risk,
} from "../../../../gen/tally/risk/v1/risk_pb";
import { checkExpression, lineAndColumn, type CheckIssue } from "./check";
import { compileRule } from "./compile";

const registry = createRegistry(file_tally_risk_v1_risk);
const assessment = celEnv({
  registry,
  funcs: strings,
  variables: {
    transfer: objectType(TransferFactsSchema),
    from_account: objectType(AccountFactsSchema),
    to_account: objectType(AccountFactsSchema),
    profile: objectType(RiskProfileSchema),
  },
});
const monitoring = celEnv({
  registry,
  funcs: strings,
  variables: { event: objectType(EventFactsSchema), profile: objectType(RiskProfileSchema) },
});

const check = (expression: string, env = assessment): CheckIssue[] => checkExpression(parse(expression), expression, env);

/** The single issue an expression has. */
function only(expression: string, env = assessment): CheckIssue {
  const issues = check(expression, env);
  expect(issues).toHaveLength(1);
  return issues[0];
}

describe("checkExpression accepts", () => {
  it.each([
    // the shipped rules
    "transfer.amount >= 100000000",
    "transfer.amount >= 1000000",
    'from_account.kind == "customer" && (profile.last_minute.debit_count >= 10 || profile.last_hour.debit_count >= 100)',
    'from_account.kind == "customer" && profile.account_age_days < 7 && transfer.amount >= 100000',
    'from_account.kind == "customer" && from_account.age_days < 7 && transfer.amount >= 100000',
    "transfer.to_account_id in [] || to_account.customer_id in []",
    // metadata: maps allow any key, by index, by selection and in has()
    'transfer.metadata["channel"] == "web"',
    '"channel" in transfer.metadata && has(transfer.metadata.channel) && transfer.metadata.channel != ""',
    'has(from_account.metadata.vip) || size(to_account.metadata) == 0 || to_account.metadata.size() > 3',
    // numbers compare across int, uint and double
    "transfer.amount > 1.5 && transfer.amount < 10u && transfer.amount == 5.0",
    "-transfer.amount < 0 && transfer.amount % 2 == 0 && transfer.amount * 2 - 1 > transfer.amount / 3",
    "double(transfer.amount) / 100.0 > 9.99 && int(transfer.amount / 100) >= 1",
    // strings
    'transfer.kind.startsWith("dep") || transfer.kind.endsWith("al") || transfer.id.contains("-")',
    'transfer.currency.lowerAscii() == "usd" || transfer.currency.upperAscii().matches("^E")',
    'transfer.kind.split(",").size() > 1 || transfer.kind.substring(1).trim() == "x" || strings.quote(transfer.kind) == ""',
    'transfer.kind + "!" == "deposit!" && string(transfer.amount) != ""',
    // timestamps and durations
    'profile.opened_at < timestamp("2025-01-01T00:00:00Z")',
    'timestamp("2025-01-01T00:00:00Z") - profile.last_activity_at > duration("1h")',
    'profile.first_activity_at + duration("24h") >= profile.opened_at && profile.opened_at.getFullYear() >= 2024',
    'profile.opened_at != null && has(profile.opened_at) && google.protobuf.Duration{seconds: 60} < duration("2m")',
    // macros, with their variables in scope only inside them
    'transfer.metadata.exists(k, k.startsWith("x")) && transfer.metadata.all(k, transfer.metadata[k].size() < 64)',
    "[1, 2, 3].filter(x, x > 1).size() == 2 && [1, 2].map(x, x * 2)[0] == 2 && [1, 2].exists_one(x, x == 1)",
    '[1, 2].map(x, x > 1, x * 10).size() == 1 && transfer.metadata.map(k, k + "=").exists(s, s == "a=")',
    "[transfer.amount, profile.last_day.debit_sum].all(transfer, transfer >= 0)",
    // messages, conditionals, types, dyn
    "profile.last_minute == profile.last_hour || profile.last_day != profile.last_hour",
    "(transfer.amount > 10 ? transfer.kind : transfer.currency) == \"x\"",
    "type(transfer.amount) == int && type(transfer) == tally.risk.v1.TransferFacts",
    'dyn(transfer.amount) == "x" && tally.risk.v1.RuleKind.RULE_KIND_MONITORING == 2',
    '{"deposit": 1, "withdrawal": 2}[transfer.kind] > 0 && transfer.kind in {"deposit": true}',
    "!to_account.known && from_account.known",
  ])("%s", (expression) => {
    expect(check(expression)).toEqual([]);
  });

  it("monitoring expressions over event and profile", () => {
    expect(check("profile.last_minute.debit_count > 20", monitoring)).toEqual([]);
    expect(check('event.state == "posted" && event.amount > 0 && event.metadata["k"] == "v"', monitoring)).toEqual([]);
  });
});

describe("checkExpression reports", () => {
  it("an undeclared variable, suggesting the declared one", () => {
    expect(only("transfr.amount > 1")).toEqual({
      message: "undeclared reference to 'transfr'; did you mean 'transfer'?",
      line: 1,
      column: 1,
    });
  });

  it("variables of the other kind of rule", () => {
    expect(only("event.amount > 0")).toMatchObject({ message: "undeclared reference to 'event'", line: 1, column: 1 });
    expect(only("transfer.amount > 0", monitoring)).toMatchObject({ message: "undeclared reference to 'transfer'" });
  });

  it("a comprehension variable used outside its macro", () => {
    expect(only("[1].exists(x, x > 0) && x > 0")).toEqual({ message: "undeclared reference to 'x'", line: 1, column: 25 });
  });

  it("an unknown field, at its dot", () => {
    expect(only("transfer.amout > 1")).toEqual({
      message: "no field 'amout' on tally.risk.v1.TransferFacts; did you mean 'amount'?",
      line: 1,
      column: 9,
    });
    expect(only("profile.last_minute.debitcount > 1")).toMatchObject({
      message: "no field 'debitcount' on tally.risk.v1.WindowStats; did you mean 'debit_count'?",
      column: 20,
    });
  });

  it("field names in their JSON spelling, which CEL does not use", () => {
    expect(only('transfer.toAccountId == "a"').message).toBe("no field 'toAccountId' on tally.risk.v1.TransferFacts");
  });

  it("an unknown field in has(), at the field", () => {
    expect(only("has(transfer.nope)")).toEqual({ message: "no field 'nope' on tally.risk.v1.TransferFacts", line: 1, column: 13 });
    expect(only("has(transfer.amount.x)")).toMatchObject({ message: "has() needs a message or a map, not int", column: 20 });
  });

  it("a selection from a value that has no fields", () => {
    expect(only("transfer.amount.value > 1")).toMatchObject({ message: "cannot select 'value' from int", column: 16 });
    expect(only("profile.opened_at.seconds > 1")).toMatchObject({ message: "cannot select 'seconds' from timestamp" });
  });

  it("comparisons between types that cannot match", () => {
    expect(only('transfer.amount > "100"')).toEqual({ message: "'>' cannot compare int with string", line: 1, column: 17 });
    expect(only("transfer.kind == 3")).toEqual({ message: "'==' cannot compare string with int", line: 1, column: 15 });
    expect(only("transfer.amount != null").message).toBe("'!=' cannot compare int with null");
    expect(only("profile.last_minute == transfer").message).toBe(
      "'==' cannot compare tally.risk.v1.WindowStats with tally.risk.v1.TransferFacts",
    );
    expect(only('profile.opened_at < "2025-01-01"').message).toBe("'<' cannot compare timestamp with string");
    expect(only("transfer.metadata == [1]").message).toBe("'==' cannot compare map(string, string) with list(int)");
  });

  it("arithmetic on operands without an overload", () => {
    expect(only("transfer.amount + 1.5 > 2.0")).toMatchObject({ message: "'+' cannot be applied to int and double", column: 17 });
    expect(only('transfer.kind - "a" == ""').message).toBe("'-' cannot be applied to string and string");
    expect(only("-transfer.kind == 1")).toMatchObject({ message: "'-' cannot be applied to string", column: 1 });
    expect(only("1.5 % 2.0 == 1.0").message).toBe("'%' cannot be applied to double and double");
  });

  it("logic on operands that are not bool", () => {
    // A selection is placed at its dot.
    expect(only("transfer.amount && true")).toMatchObject({ message: "'&&' needs bool operands, not int", column: 9 });
    expect(only("true || transfer.kind")).toMatchObject({ message: "'||' needs bool operands, not string", column: 17 });
    expect(only("!transfer.kind").message).toBe("'!' needs a bool operand, not string");
    expect(only("transfer.amount ? true : false").message).toBe("the condition of '? :' must be bool, not int");
  });

  it("macro predicates that are not bool", () => {
    expect(only("[1].all(x, x)")).toEqual({ message: "the predicate of all() must be bool, not int", line: 1, column: 12 });
    expect(only("[1].filter(x, x + 1).size() == 0").message).toBe("the predicate of filter() must be bool, not int");
    expect(only("transfer.metadata.exists(k, k)").message).toBe("the predicate of exists() must be bool, not string");
  });

  it("macros called with the wrong arguments", () => {
    expect(only("[1].all(x, 1, 2)")).toMatchObject({ message: "wrong arguments for the macro 'all'; use list.all(x, predicate)", column: 4 });
    expect(only("has(transfer)").message).toBe("wrong arguments for the macro 'has'; use has(message.field)");
  });

  it("iterating over something that is not a list or a map", () => {
    expect(only("transfer.kind.exists(c, c == \"a\")").message).toBe("cannot iterate over string; a list or a map is needed");
  });

  it("'in' without a list or map on the right, or with the wrong element type", () => {
    expect(only("1 in transfer.kind").message).toBe("'in' needs a list or a map on the right, not string");
    expect(only("transfer.amount in [\"a\"]").message).toBe("'in' cannot find int in list(string)");
    expect(only("1 in transfer.metadata").message).toBe("'in' cannot find int in map(string, string)");
  });

  it("indexes of the wrong type", () => {
    expect(only('transfer.metadata[1] == "a"').message).toBe("the keys of map(string, string) are string, not int");
    expect(only('[1, 2]["a"] == 1').message).toBe("a list index must be an int, not string");
    expect(only('transfer.kind[0] == "d"').message).toBe("cannot index string");
  });

  it("unknown functions and methods", () => {
    expect(only("foo(transfer.amount)")).toEqual({ message: "unknown function 'foo'", line: 1, column: 1 });
    expect(only("transfer.kind.reverse() == \"\"")).toEqual({ message: "unknown method 'reverse'", line: 1, column: 14 });
    expect(only('transfer.kind.startWith("d")').message).toBe("unknown method 'startWith'; did you mean 'startsWith'?");
    expect(only('matches(transfer.kind, "a")').message).toBe("'matches' is a method: call it as value.matches(...)");
    // Names that objects in JavaScript have are not special.
    expect(only('transfer.kind.constructor() == ""').message).toBe("unknown method 'constructor'");
    expect(only("toString(1)").message).toBe("unknown function 'toString'");
    expect(only("transfer.kind.timestamp() > 1").message).toBe("'timestamp' is a function, not a method: call it as timestamp(...)");
  });

  it("known functions and methods called with the wrong arguments", () => {
    expect(only("transfer.kind.startsWith(1)")).toMatchObject({ message: "no overload of 'startsWith' accepts string.startsWith(int)", column: 14 });
    expect(only("size(transfer.amount) > 1").message).toBe("no overload of 'size' accepts size(int)");
    expect(only("timestamp(true) > profile.opened_at").message).toBe("no overload of 'timestamp' accepts timestamp(bool)");
    expect(only("transfer.kind.contains(\"a\", \"b\")").message).toBe("no overload of 'contains' accepts string.contains(string, string)");
  });

  it("an expression that is not a bool, at its root", () => {
    expect(only("transfer.amount + 1")).toEqual({ message: "a rule must evaluate to bool, but this expression is int", line: 1, column: 17 });
    expect(only("transfer.kind").message).toBe("a rule must evaluate to bool, but this expression is string");
    expect(only("profile.last_minute").message).toBe("a rule must evaluate to bool, but this expression is tally.risk.v1.WindowStats");
    expect(only("[1].map(x, x > 0)").message).toBe("a rule must evaluate to bool, but this expression is list(dyn)");
  });

  it("every issue of an expression, each on its own line and column", () => {
    const expression = [
      'from_account.kind == "customer" &&',
      "  (profile.last_minute.debit_cnt >= 10 ||",
      '   transfer.amount > "100") &&',
      "\tnope(transfer.amount)",
    ].join("\n");
    expect(check(expression)).toEqual([
      { message: "no field 'debit_cnt' on tally.risk.v1.WindowStats; did you mean 'debit_count'?", line: 2, column: 23 },
      { message: "'>' cannot compare int with string", line: 3, column: 20 },
      { message: "unknown function 'nope'", line: 4, column: 2 },
    ]);
  });

  it("no follow-on issues once a part's type is unknown", () => {
    // `transfr` is unknown, so nothing more is said about `.amount > "x"`.
    expect(check('transfr.amount > "x"')).toHaveLength(1);
  });
});

describe("lineAndColumn", () => {
  it("counts lines and columns from 1", () => {
    const starts = [0, 5, 6];
    expect(lineAndColumn(starts, 0)).toEqual({ line: 1, column: 1 });
    expect(lineAndColumn(starts, 4)).toEqual({ line: 1, column: 5 });
    expect(lineAndColumn(starts, 5)).toEqual({ line: 2, column: 1 });
    expect(lineAndColumn(starts, 9)).toEqual({ line: 3, column: 4 });
  });
});

describe("cost bounds", () => {
  const issuesOf = (expression: string) => compileRule("assessment", expression).issues.map((i) => i.message);

  it("refuses macros nested more than two deep, which multiply their work", () => {
    const list = `[${Array.from({ length: 30 }, (_, i) => i).join(", ")}]`;
    expect(issuesOf(`${list}.all(a, ${list}.all(b, a + b >= 0))`)).toEqual([]);
    const deep = `${list}.all(a, ${list}.all(b, ${list}.all(c, ${list}.all(d, ${list}.all(e, a + b + c + d + e >= 0)))))`;
    expect(issuesOf(deep).join()).toContain("nest at most 2 deep");
    expect(issuesOf(`${list}.map(a, ${list}.map(b, ${list}.map(c, [a, b, c]))).size() > 0`).join()).toContain("nest at most 2 deep");
  });

  it("refuses iterating a long list literal, and an overlong literal at all", () => {
    const ids = (n: number) => `[${Array.from({ length: n }, (_, i) => `"id-${i}"`).join(", ")}]`;
    expect(issuesOf(`transfer.to_account_id in ${ids(300)}`)).toEqual([]);
    expect(issuesOf(`${ids(101)}.exists(x, x == transfer.to_account_id)`).join()).toContain("test membership with 'in'");
    const huge = `[${Array.from({ length: 1001 }, () => "1").join(",")}]`;
    expect(huge.length).toBeLessThan(4096);
    expect(issuesOf(`transfer.amount in ${huge}`).join()).toContain("at most 1000 elements");
  });
});
