import { create, createRegistry, fromJson, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { celEnv, celType, isCelError, objectType, parse, plan, type CelEnv } from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import {
  AccountFactsSchema,
  EventFactsSchema,
  RiskProfileSchema,
  TransferFactsSchema,
  file_tally_risk_v1_risk,
  type AccountFacts,
  type EventFacts,
  type RiskProfile,
  type TransferFacts,
} from "../../../../gen/tally/risk/v1/risk_pb";
import { checkExpression, lineAndColumn, lineStartsOf } from "./check";

/**
 * Rule expressions: CEL over the facts of a transfer (assessment rules) or of a ledger event
 * (monitoring rules). A rule is parsed, checked and planned once, then evaluated many times.
 */

export type RuleKindName = "assessment" | "monitoring";

export interface RuleIssue {
  message: string;
  line: number;
  column: number;
}

export interface AssessmentInput {
  transfer: TransferFacts;
  from_account: AccountFacts;
  to_account: AccountFacts;
  profile: RiskProfile;
}

export interface MonitoringInput {
  event: EventFacts;
  /** The debit account of the event's transfer, and its profile. */
  account: AccountFacts;
  profile: RiskProfile;
}

export type RuleInput = AssessmentInput | MonitoringInput;

export interface CompiledRule {
  readonly kind: RuleKindName;
  readonly expression: string;
  /** Never throws: a run-time failure, or a value that is not a bool, comes back as `error`. */
  evaluate(input: RuleInput): { matched: boolean } | { error: string };
}

export const MAX_EXPRESSION_LENGTH = 4096;

/** The variables each kind of rule sees, by the name expressions use. */
const VARIABLES: Record<RuleKindName, Readonly<Record<string, DescMessage>>> = {
  assessment: {
    transfer: TransferFactsSchema,
    from_account: AccountFactsSchema,
    to_account: AccountFactsSchema,
    profile: RiskProfileSchema,
  },
  monitoring: {
    event: EventFactsSchema,
    account: AccountFactsSchema,
    profile: RiskProfileSchema,
  },
};

const registry = createRegistry(file_tally_risk_v1_risk);

const environments = new Map<RuleKindName, CelEnv>();

/** One environment per kind, made on first use: the facts as messages, plus the strings extension. */
function environment(kind: RuleKindName): CelEnv {
  let env = environments.get(kind);
  if (env === undefined) {
    const variables = Object.fromEntries(Object.entries(VARIABLES[kind]).map(([name, desc]) => [name, objectType(desc)]));
    env = celEnv({ registry, funcs: strings, variables });
    environments.set(kind, env);
  }
  return env;
}

const issue = (message: string, line = 1, column = 1): RuleIssue => ({ message, line, column });

/** A parse error carries its position in `location`, and in its message as `<input>:line:column: `. */
function parseIssue(error: unknown, source: string): RuleIssue {
  const raw = error instanceof Error ? error.message : String(error);
  const prefixed = /^<input>:(\d+):(\d+): ?(.*)$/s.exec(raw);
  const message = `syntax error: ${prefixed ? prefixed[3] : raw}`;
  const location = (error as { location?: { start?: { offset?: unknown } } } | null)?.location?.start;
  if (location && typeof location.offset === "number") {
    return { message, ...lineAndColumn(lineStartsOf(source), location.offset) };
  }
  return prefixed ? issue(message, Number(prefixed[1]), Number(prefixed[2])) : issue(message);
}

function describe(value: unknown): string {
  try {
    return String(celType(value as Parameters<typeof celType>[0]));
  } catch {
    return typeof value;
  }
}

export function compileRule(
  kind: RuleKindName,
  expression: string,
): { rule: CompiledRule; issues: [] } | { rule: undefined; issues: RuleIssue[] } {
  if (expression.trim() === "") {
    return { rule: undefined, issues: [issue("the expression is empty")] };
  }
  if (expression.length > MAX_EXPRESSION_LENGTH) {
    return {
      rule: undefined,
      issues: [issue(`the expression is ${expression.length} characters long; at most ${MAX_EXPRESSION_LENGTH} are allowed`)],
    };
  }
  const env = environment(kind);
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(expression);
  } catch (error) {
    return { rule: undefined, issues: [parseIssue(error, expression)] };
  }
  let issues: RuleIssue[];
  try {
    issues = checkExpression(parsed, expression, env);
  } catch (error) {
    // A checker failure (a pathological expression) refuses the rule rather than failing the call.
    issues = [issue(`the expression could not be checked: ${error instanceof Error ? error.message : String(error)}`)];
  }
  if (issues.length > 0) return { rule: undefined, issues };

  let program: (bindings: Record<string, unknown>) => unknown;
  try {
    program = plan(env, parsed) as (bindings: Record<string, unknown>) => unknown;
  } catch (error) {
    return { rule: undefined, issues: [issue(error instanceof Error ? error.message : String(error))] };
  }
  const names = Object.keys(VARIABLES[kind]);
  const rule: CompiledRule = {
    kind,
    expression,
    evaluate(input) {
      try {
        // Bind only this kind's variables; a missing one fails as an unresolved attribute.
        const bindings: Record<string, unknown> = {};
        for (const name of names) {
          const value = (input as unknown as Record<string, unknown>)[name];
          if (value !== undefined) bindings[name] = value;
        }
        const result = program(bindings);
        if (typeof result === "boolean") return { matched: result };
        if (isCelError(result)) return { error: result.message };
        return { error: `the rule evaluated to ${describe(result)}, not bool` };
      } catch (error) {
        return { error: error instanceof Error ? error.message : String(error) };
      }
    },
  };
  return { rule, issues: [] };
}

/**
 * Reads a sample input: a JSON object keyed by variable name, each value a message in its
 * proto3 JSON form (field names as in the proto or in lowerCamelCase). A variable left out is
 * a zero-valued message, and so is a blank input. JSON has no positions here: issues are at 0:0.
 */
export function parseRuleInput(
  kind: RuleKindName,
  json: string,
): { input: RuleInput; issues: [] } | { input: undefined; issues: RuleIssue[] } {
  let value: unknown;
  try {
    value = json.trim() === "" ? {} : JSON.parse(json);
  } catch (error) {
    return { input: undefined, issues: [issue(`the input is not valid JSON: ${(error as Error).message}`, 0, 0)] };
  }
  const variables = VARIABLES[kind];
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { input: undefined, issues: [issue(`the input must be a JSON object with the variables ${Object.keys(variables).join(", ")}`, 0, 0)] };
  }
  const fields = value as Record<string, JsonValue>;
  const issues: RuleIssue[] = [];
  for (const name of Object.keys(fields)) {
    if (!(name in variables)) {
      issues.push(issue(`unknown variable '${name}'; ${kind} rules see ${Object.keys(variables).join(", ")}`, 0, 0));
    }
  }
  const input: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(variables)) {
    const given = fields[name];
    try {
      input[name] = given === undefined ? create(schema) : fromJson(schema, given, { registry });
    } catch (error) {
      issues.push(issue(`${name}: ${(error as Error).message}`, 0, 0));
    }
  }
  if (issues.length > 0) return { input: undefined, issues };
  return { input: input as unknown as RuleInput, issues: [] };
}

/**
 * Compiles an expression and evaluates it on a sample input, for analysts writing rules.
 * `valid` is about the expression alone; issues with the input are reported but leave it
 * valid. `resultJson` is `true`, `false` or `{"error": "..."}`, and empty when nothing ran.
 */
export function testRule(kind: RuleKindName, expression: string, inputJson: string): { valid: boolean; issues: RuleIssue[]; resultJson: string } {
  const compiled = compileRule(kind, expression);
  if (compiled.rule === undefined) return { valid: false, issues: compiled.issues, resultJson: "" };
  const parsed = parseRuleInput(kind, inputJson);
  if (parsed.input === undefined) return { valid: true, issues: parsed.issues, resultJson: "" };
  const outcome = compiled.rule.evaluate(parsed.input);
  return { valid: true, issues: [], resultJson: JSON.stringify("error" in outcome ? { error: outcome.error } : outcome.matched) };
}
