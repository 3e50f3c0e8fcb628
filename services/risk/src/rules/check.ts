import { ScalarType, type DescField, type DescMessage, type Registry } from "@bufbuild/protobuf";
import type { CelEnv, CelType, parse } from "@bufbuild/cel";

/**
 * A static checker for rule expressions.
 *
 * @bufbuild/cel evaluates expressions but does not type-check them, so a rule with a typo
 * (`transfer.amout`) or a comparison that can never hold (`transfer.kind == 3`) would only
 * fail, or silently never match, once it runs. This checker infers a type for every node of
 * the parsed expression and reports what cannot work, with its line and column.
 *
 * It is deliberately lenient: whenever a type is not known precisely it becomes `dyn`, which
 * matches anything, so it may let a wrong expression through rather than refuse a right one.
 * Functions, methods and operators are checked against the overloads the environment declares,
 * so what passes here is what the evaluator can dispatch.
 */

export interface CheckIssue {
  message: string;
  /** 1-based. */
  line: number;
  /** 1-based, in UTF-16 code units (as the parser counts them). */
  column: number;
}

type ParsedCel = ReturnType<typeof parse>;
type Expr = ParsedCel["expr"];
type ExprOf<K extends NonNullable<Expr["exprKind"]["case"]>> = Extract<Expr["exprKind"], { case: K }>["value"];
type Constant = ExprOf<"constExpr">;

// ---------------------------------------------------------------------------
// The type lattice

type ScalarKind = "int" | "uint" | "double" | "string" | "bool" | "bytes" | "timestamp" | "duration" | "null" | "type" | "dyn";

export type CheckType =
  | { readonly kind: ScalarKind }
  | { readonly kind: "list"; readonly elem: CheckType }
  | { readonly kind: "map"; readonly key: CheckType; readonly value: CheckType }
  | { readonly kind: "message"; readonly desc: DescMessage };

const INT: CheckType = { kind: "int" };
const UINT: CheckType = { kind: "uint" };
const DOUBLE: CheckType = { kind: "double" };
const STRING: CheckType = { kind: "string" };
const BOOL: CheckType = { kind: "bool" };
const BYTES: CheckType = { kind: "bytes" };
const TIMESTAMP: CheckType = { kind: "timestamp" };
const DURATION: CheckType = { kind: "duration" };
const NULL: CheckType = { kind: "null" };
const TYPE: CheckType = { kind: "type" };
const DYN: CheckType = { kind: "dyn" };

const listOf = (elem: CheckType): CheckType => ({ kind: "list", elem });
const mapOf = (key: CheckType, value: CheckType): CheckType => ({ kind: "map", key, value });

const isNumeric = (t: CheckType): boolean => t.kind === "int" || t.kind === "uint" || t.kind === "double";
const isBoolish = (t: CheckType): boolean => t.kind === "bool" || t.kind === "dyn";

export function formatType(t: CheckType): string {
  switch (t.kind) {
    case "list":
      return `list(${formatType(t.elem)})`;
    case "map":
      return `map(${formatType(t.key)}, ${formatType(t.value)})`;
    case "message":
      return t.desc.typeName;
    default:
      return t.kind;
  }
}

function sameType(a: CheckType, b: CheckType): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === "list" && b.kind === "list") return sameType(a.elem, b.elem);
  if (a.kind === "map" && b.kind === "map") return sameType(a.key, b.key) && sameType(a.value, b.value);
  if (a.kind === "message" && b.kind === "message") return a.desc.typeName === b.desc.typeName;
  return true;
}

/** The common type of several values (list elements, ternary branches): exact or `dyn`. */
function join(types: CheckType[]): CheckType {
  if (types.length === 0) return DYN;
  return types.every((t) => sameType(t, types[0])) ? types[0] : DYN;
}

/** Whether a value of type `arg` can be passed where a function declares `param`. */
function accepts(param: CheckType, arg: CheckType): boolean {
  if (param.kind === "dyn" || arg.kind === "dyn") return true;
  if (param.kind === "list" && arg.kind === "list") return accepts(param.elem, arg.elem);
  if (param.kind === "map" && arg.kind === "map") return accepts(param.key, arg.key) && accepts(param.value, arg.value);
  return sameType(param, arg);
}

/**
 * Whether `==` between the two types can ever be true. CEL compares numbers across int, uint
 * and double; `null` equals only null and message-like values; messages must be the same type.
 */
function comparable(a: CheckType, b: CheckType): boolean {
  if (a.kind === "dyn" || b.kind === "dyn") return true;
  if (isNumeric(a) && isNumeric(b)) return true;
  const nullable = (t: CheckType) => t.kind === "null" || t.kind === "message" || t.kind === "timestamp" || t.kind === "duration";
  if (a.kind === "null" || b.kind === "null") return nullable(a) && nullable(b);
  if (a.kind === "list" && b.kind === "list") return comparable(a.elem, b.elem);
  if (a.kind === "map" && b.kind === "map") return comparable(a.key, b.key) && comparable(a.value, b.value);
  return sameType(a, b);
}

// ---------------------------------------------------------------------------
// From protobuf descriptors and @bufbuild/cel types to the lattice

/** Well-known types that CEL sees as something other than a message. */
function messageType(desc: DescMessage): CheckType {
  switch (desc.typeName) {
    case "google.protobuf.Timestamp":
      return TIMESTAMP;
    case "google.protobuf.Duration":
      return DURATION;
    case "google.protobuf.Struct":
      return mapOf(STRING, DYN);
    case "google.protobuf.ListValue":
      return listOf(DYN);
    // Values, Any and the wrappers (which may also be null) are only known at run time.
    case "google.protobuf.Value":
    case "google.protobuf.Any":
    case "google.protobuf.BoolValue":
    case "google.protobuf.BytesValue":
    case "google.protobuf.DoubleValue":
    case "google.protobuf.FloatValue":
    case "google.protobuf.Int32Value":
    case "google.protobuf.Int64Value":
    case "google.protobuf.StringValue":
    case "google.protobuf.UInt32Value":
    case "google.protobuf.UInt64Value":
      return DYN;
    default:
      return { kind: "message", desc };
  }
}

function scalarType(scalar: ScalarType): CheckType {
  switch (scalar) {
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return DOUBLE;
    case ScalarType.INT32:
    case ScalarType.INT64:
    case ScalarType.SINT32:
    case ScalarType.SINT64:
    case ScalarType.SFIXED32:
    case ScalarType.SFIXED64:
      return INT;
    case ScalarType.UINT32:
    case ScalarType.UINT64:
    case ScalarType.FIXED32:
    case ScalarType.FIXED64:
      return UINT;
    case ScalarType.BOOL:
      return BOOL;
    case ScalarType.STRING:
      return STRING;
    case ScalarType.BYTES:
      return BYTES;
  }
}

/** The CEL type of a message field; enums are ints in CEL. */
function fieldType(field: DescField): CheckType {
  switch (field.fieldKind) {
    case "scalar":
      return scalarType(field.scalar);
    case "enum":
      return INT;
    case "message":
      return messageType(field.message);
    case "list":
      switch (field.listKind) {
        case "scalar":
          return listOf(scalarType(field.scalar));
        case "enum":
          return listOf(INT);
        case "message":
          return listOf(messageType(field.message));
      }
      break;
    case "map": {
      const key = scalarType(field.mapKey);
      switch (field.mapKind) {
        case "scalar":
          return mapOf(key, scalarType(field.scalar));
        case "enum":
          return mapOf(key, INT);
        case "message":
          return mapOf(key, messageType(field.message));
      }
    }
  }
  return DYN;
}

function fromCelType(t: CelType, registry: Registry): CheckType {
  switch (t.kind) {
    case "list":
      return listOf(fromCelType(t.element, registry));
    case "map":
      return mapOf(fromCelType(t.key, registry), fromCelType(t.value, registry));
    case "object": {
      const desc = t.desc ?? registry.getMessage(t.name);
      return desc ? messageType(desc) : DYN;
    }
    case "scalar":
      switch (t.scalar) {
        case "int":
          return INT;
        case "uint":
          return UINT;
        case "double":
          return DOUBLE;
        case "string":
          return STRING;
        case "bool":
          return BOOL;
        case "bytes":
          return BYTES;
        case "null_type":
          return NULL;
        case "type":
          return TYPE;
        case "dyn":
          return DYN;
      }
  }
  return DYN;
}

// ---------------------------------------------------------------------------
// Names the checker knows besides variables and functions

/** Identifiers that evaluate to a type, as in `type(x) == int`. */
const TYPE_NAMES = new Set(["int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"]);

/** Macros the parser expands; a call left with one of these names had the wrong arguments. */
const MACRO_USAGE = new Map([
  ["has", "has(message.field)"],
  ["all", "list.all(x, predicate)"],
  ["exists", "list.exists(x, predicate)"],
  ["exists_one", "list.exists_one(x, predicate)"],
  ["filter", "list.filter(x, predicate)"],
  ["map", "list.map(x, transform) or list.map(x, predicate, transform)"],
]);

/** Macros whose second argument must be a bool. */
const PREDICATE_MACROS = new Set(["all", "exists", "exists_one", "filter"]);

/** How operators are written, for messages. */
const OPERATORS = new Map([
  ["_==_", "=="],
  ["_!=_", "!="],
  ["_<_", "<"],
  ["_<=_", "<="],
  ["_>_", ">"],
  ["_>=_", ">="],
  ["_+_", "+"],
  ["_-_", "-"],
  ["_*_", "*"],
  ["_/_", "/"],
  ["_%_", "%"],
  ["-_", "-"],
  ["!_", "!"],
  ["_&&_", "&&"],
  ["_||_", "||"],
]);
const ORDERING = new Set(["_<_", "_<=_", "_>_", "_>=_"]);

/** One overload of a function, from the environment's function table. */
interface Signature {
  readonly target: CheckType | undefined;
  readonly args: readonly CheckType[];
  readonly result: CheckType;
}

type Scope = ReadonlyMap<string, CheckType>;

/** Edit distance, to suggest the field or variable that was probably meant. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}

function suggestion(name: string, candidates: Iterable<string>): string {
  let best: string | undefined;
  // Short names are close to too many others: allow one edit per three characters, at most two.
  let bestDistance = Math.min(2, Math.max(1, Math.floor(name.length / 3))) + 1;
  for (const candidate of candidates) {
    const d = distance(name, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best === undefined ? "" : `; did you mean '${best}'?`;
}

/** `a.b.c` as a dotted name, when the expression is only identifiers and selections. */
function qualifiedName(e: Expr): string | undefined {
  switch (e.exprKind.case) {
    case "identExpr":
      return e.exprKind.value.name;
    case "selectExpr": {
      const { operand, field, testOnly } = e.exprKind.value;
      const parent = operand && !testOnly ? qualifiedName(operand) : undefined;
      return parent === undefined ? undefined : `${parent}.${field}`;
    }
    default:
      return undefined;
  }
}

/** Offsets at which each line of a text starts. */
export function lineStartsOf(source: string): number[] {
  const starts = [0];
  for (let i = 0; i < source.length; i++) if (source.charCodeAt(i) === 10) starts.push(i + 1);
  return starts;
}

/** Line starts from the parser when it records them (this one does not), else from the text. */
function lineStarts(parsed: ParsedCel, source: string): number[] {
  const recorded = parsed.sourceInfo?.lineOffsets ?? [];
  return recorded.length > 0 ? [0, ...recorded] : lineStartsOf(source);
}

/** 1-based line and column of a character offset. */
export function lineAndColumn(starts: readonly number[], offset: number): { line: number; column: number } {
  let line = 0;
  while (line + 1 < starts.length && starts[line + 1] <= offset) line++;
  return { line: line + 1, column: offset - starts[line] + 1 };
}

// ---------------------------------------------------------------------------
// The checker

/**
 * Checks a parsed expression against an environment: its variables, its functions
 * (CEL's standard library plus whatever was added, such as the strings extension) and its
 * protobuf registry. `source` is the expression text, for line numbers.
 */
/**
 * Bounds on what one evaluation may cost. CEL has no loops but its macros
 * (all, exists, map, filter) iterate, and nested they multiply: a rule runs
 * on every assessment, synchronously, so its work must stay small.
 */
export const MAX_COMPREHENSION_DEPTH = 2;
export const MAX_LIST_LITERAL = 1000;
export const MAX_ITERATED_LIST_LITERAL = 100;

export function checkExpression(parsed: ParsedCel, source: string, env: CelEnv): CheckIssue[] {
  return new Checker(parsed, source, env).run();
}

class Checker {
  private readonly issues: CheckIssue[] = [];
  private readonly starts: number[];
  private readonly positions: Readonly<Record<string, number>>;
  private readonly registry: Registry;
  private readonly functions = new Map<string, Signature[]>();
  private readonly variables = new Map<string, CheckType>();
  /** Expression ids of macro predicates, with the macro's name, for clearer messages. */
  private readonly predicates = new Map<string, string>();
  /** How many comprehensions enclose the expression being checked. */
  private depth = 0;

  constructor(
    private readonly parsed: ParsedCel,
    source: string,
    env: CelEnv,
  ) {
    this.starts = lineStarts(parsed, source);
    this.positions = parsed.sourceInfo?.positions ?? {};
    this.registry = env.registry;
    for (const [name, type] of env.variables) this.variables.set(name, fromCelType(type, env.registry));
    for (const func of env.funcs) {
      const signature: Signature = {
        target: func.target && fromCelType(func.target, env.registry),
        args: func.arguments.map((arg) => fromCelType(arg, env.registry)),
        result: fromCelType(func.result, env.registry),
      };
      const overloads = this.functions.get(func.name);
      if (overloads) overloads.push(signature);
      else this.functions.set(func.name, [signature]);
    }
    for (const call of Object.values(parsed.sourceInfo?.macroCalls ?? {})) {
      if (call.exprKind.case !== "callExpr") continue;
      const { function: name, args } = call.exprKind.value;
      // The predicate is the second argument (map's three-argument form filters with it too).
      if ((PREDICATE_MACROS.has(name) || (name === "map" && args.length === 3)) && args[1]) {
        this.predicates.set(String(args[1].id), `${name}()`);
      }
    }
  }

  run(): CheckIssue[] {
    const type = this.infer(this.parsed.expr, this.variables);
    if (!isBoolish(type)) {
      this.report(this.parsed.expr, `a rule must evaluate to bool, but this expression is ${formatType(type)}`);
    }
    return this.issues;
  }

  private report(e: Expr, message: string): void {
    const offset = this.positions[String(e.id)] ?? 0;
    this.issues.push({ message, ...lineAndColumn(this.starts, offset) });
  }

  private infer(e: Expr | undefined, scope: Scope): CheckType {
    if (e === undefined) return DYN;
    switch (e.exprKind.case) {
      case "constExpr":
        return this.inferConst(e.exprKind.value);
      case "identExpr":
        return this.inferIdent(e, e.exprKind.value.name, scope);
      case "selectExpr":
        return this.inferSelect(e, e.exprKind.value, scope);
      case "callExpr":
        return this.inferCall(e, e.exprKind.value, scope);
      case "listExpr":
        if (e.exprKind.value.elements.length > MAX_LIST_LITERAL) {
          this.report(e, `a list literal holds at most ${MAX_LIST_LITERAL} elements`);
        }
        return listOf(join(e.exprKind.value.elements.map((element) => this.infer(element, scope))));
      case "structExpr":
        return this.inferStruct(e, e.exprKind.value, scope);
      case "comprehensionExpr":
        return this.inferComprehension(e, e.exprKind.value, scope);
      default:
        return DYN;
    }
  }

  private inferConst(c: Constant): CheckType {
    switch (c.constantKind.case) {
      case "int64Value":
        return INT;
      case "uint64Value":
        return UINT;
      case "doubleValue":
        return DOUBLE;
      case "stringValue":
        return STRING;
      case "bytesValue":
        return BYTES;
      case "boolValue":
        return BOOL;
      case "nullValue":
        return NULL;
      case "durationValue":
        return DURATION;
      case "timestampValue":
        return TIMESTAMP;
      default:
        return DYN;
    }
  }

  /** A variable in scope (comprehension variables shadow declared ones), or a type name. */
  private inferIdent(e: Expr, name: string, scope: Scope): CheckType {
    const variable = scope.get(name);
    if (variable) return variable;
    const resolved = this.resolveName(name);
    if (resolved) return resolved;
    const visible = [...scope.keys()].filter((key) => !key.startsWith("@"));
    this.report(e, `undeclared reference to '${name}'${suggestion(name, visible)}`);
    return DYN;
  }

  /** Names the evaluator resolves without a variable: type names, message types and enum values. */
  private resolveName(name: string): CheckType | undefined {
    if (TYPE_NAMES.has(name) || this.registry.getMessage(name)) return TYPE;
    const dot = name.lastIndexOf(".");
    if (dot > 0) {
      const enumDesc = this.registry.getEnum(name.slice(0, dot));
      if (enumDesc?.values.some((value) => value.name === name.slice(dot + 1))) return INT;
    }
    return undefined;
  }

  private inferSelect(e: Expr, select: ExprOf<"selectExpr">, scope: Scope): CheckType {
    const { operand, field, testOnly } = select;
    // `google.protobuf.Timestamp` or `pkg.Enum.VALUE` parse as selections on an undeclared identifier.
    const name = qualifiedName(e);
    if (name !== undefined && !scope.has(name.split(".")[0])) {
      const resolved = this.resolveName(name);
      if (resolved) return resolved;
    }
    const target = this.infer(operand, scope);
    // has(a.b) is recorded at `has`; the selection inside it is where the field is written.
    const at = testOnly ? this.macroArgument(e) : e;
    switch (target.kind) {
      case "message": {
        const found = target.desc.fields.find((f) => f.name === field);
        if (!found) {
          const names = target.desc.fields.map((f) => f.name);
          this.report(at, `no field '${field}' on ${target.desc.typeName}${suggestion(field, names)}`);
          return testOnly ? BOOL : DYN;
        }
        return testOnly ? BOOL : fieldType(found);
      }
      // Any key may be selected from a map: `m.k` is `m["k"]`, and `has(m.k)` tests the key.
      case "map":
        return testOnly ? BOOL : target.value;
      case "dyn":
        return testOnly ? BOOL : DYN;
      default:
        this.report(at, testOnly ? `has() needs a message or a map, not ${formatType(target)}` : `cannot select '${field}' from ${formatType(target)}`);
        return testOnly ? BOOL : DYN;
    }
  }

  /** The first argument of the macro call an expression was expanded from, if any. */
  private macroArgument(e: Expr): Expr {
    const call = this.parsed.sourceInfo?.macroCalls[String(e.id)];
    return (call?.exprKind.case === "callExpr" && call.exprKind.value.args[0]) || e;
  }

  /** A message literal such as `google.protobuf.Duration{seconds: 60}`, or a map literal. */
  private inferStruct(e: Expr, struct: ExprOf<"structExpr">, scope: Scope): CheckType {
    if (struct.messageName === "") {
      const keys: CheckType[] = [];
      const values: CheckType[] = [];
      for (const entry of struct.entries) {
        if (entry.keyKind.case === "mapKey") keys.push(this.infer(entry.keyKind.value, scope));
        values.push(this.infer(entry.value, scope));
      }
      return mapOf(join(keys), join(values));
    }
    const desc = this.registry.getMessage(struct.messageName.replace(/^\./, ""));
    if (!desc) {
      this.report(e, `unknown message type '${struct.messageName}'`);
    }
    for (const entry of struct.entries) {
      if (desc && entry.keyKind.case === "fieldKey" && !desc.fields.some((f) => f.name === entry.keyKind.value)) {
        this.report(entry.value ?? e, `no field '${entry.keyKind.value}' on ${desc.typeName}`);
      }
      this.infer(entry.value, scope);
    }
    return desc ? messageType(desc) : DYN;
  }

  /**
   * Macros (all, exists, exists_one, filter, map) arrive expanded into a fold over a list or
   * a map: the iteration variable takes the element (or key) type, the accumulator the type
   * of its initial value, and both are visible only inside the loop.
   */
  private inferComprehension(e: Expr, loop: ExprOf<"comprehensionExpr">, scope: Scope): CheckType {
    if (this.depth >= MAX_COMPREHENSION_DEPTH) {
      this.report(e, `macros like all(), exists(), map() and filter() nest at most ${MAX_COMPREHENSION_DEPTH} deep in a rule`);
      return DYN;
    }
    if (loop.iterRange?.exprKind.case === "listExpr" && loop.iterRange.exprKind.value.elements.length > MAX_ITERATED_LIST_LITERAL) {
      this.report(loop.iterRange, `a list literal iterated by a macro holds at most ${MAX_ITERATED_LIST_LITERAL} elements; test membership with 'in'`);
    }
    this.depth++;
    try {
      return this.inferLoop(e, loop, scope);
    } finally {
      this.depth--;
    }
  }

  private inferLoop(e: Expr, loop: ExprOf<"comprehensionExpr">, scope: Scope): CheckType {
    const range = this.infer(loop.iterRange, scope);
    let first: CheckType = DYN;
    let second: CheckType = DYN;
    switch (range.kind) {
      case "list":
        [first, second] = loop.iterVar2 ? [INT, range.elem] : [range.elem, DYN];
        break;
      case "map":
        [first, second] = [range.key, range.value];
        break;
      case "dyn":
        break;
      default:
        this.report(loop.iterRange ?? e, `cannot iterate over ${formatType(range)}; a list or a map is needed`);
    }
    const accumulator = this.infer(loop.accuInit, scope);
    const inner = new Map(scope);
    inner.set(loop.iterVar, first);
    if (loop.iterVar2) inner.set(loop.iterVar2, second);
    inner.set(loop.accuVar, accumulator);
    this.infer(loop.loopCondition, inner);
    this.infer(loop.loopStep, inner);
    return this.infer(loop.result, new Map(scope).set(loop.accuVar, accumulator));
  }

  private inferCall(e: Expr, call: ExprOf<"callExpr">, scope: Scope): CheckType {
    const name = call.function;
    // `strings.quote(s)`: a namespaced function, which the evaluator prefers over a method call.
    const namespace = call.target && qualifiedName(call.target);
    if (namespace !== undefined && this.functions.has(`${namespace}.${name}`)) {
      return this.resolveCall(e, `${namespace}.${name}`, undefined, call.args.map((arg) => this.infer(arg, scope)));
    }
    const target = call.target && this.infer(call.target, scope);
    // A macro name still standing as a call is one the parser could not expand: its arguments
    // (loop variables among them) mean nothing, so they are not checked.
    const usage = MACRO_USAGE.get(name);
    if (usage !== undefined && !this.functions.has(name)) {
      this.report(e, `wrong arguments for the macro '${name}'; use ${usage}`);
      return DYN;
    }
    const args = call.args.map((arg) => this.infer(arg, scope));

    switch (name) {
      case "_&&_":
      case "_||_":
        call.args.forEach((arg, i) => this.expectBool(arg, args[i], `'${OPERATORS.get(name)}' needs bool operands`));
        return BOOL;
      case "!_":
        this.expectBool(call.args[0], args[0], "'!' needs a bool operand");
        return BOOL;
      case "@not_strictly_false":
        return BOOL;
      case "_?_:_":
        this.expectBool(call.args[0], args[0], "the condition of '? :' must be bool");
        return join([args[1], args[2]]);
      case "_==_":
      case "_!=_":
        if (!comparable(args[0], args[1])) {
          this.report(e, `'${OPERATORS.get(name)}' cannot compare ${formatType(args[0])} with ${formatType(args[1])}`);
        }
        return BOOL;
      case "@in":
        return this.inferIn(e, args[0], args[1]);
      case "_[_]":
        return this.inferIndex(e, args[0], args[1]);
      default:
        return this.resolveCall(e, name, target, args);
    }
  }

  private expectBool(arg: Expr | undefined, type: CheckType, message: string): void {
    if (arg === undefined || isBoolish(type)) return;
    const macro = this.predicates.get(String(arg.id));
    this.report(arg, macro ? `the predicate of ${macro} must be bool, not ${formatType(type)}` : `${message}, not ${formatType(type)}`);
  }

  /** `x in list` compares x with the elements; `k in map` with the keys. */
  private inferIn(e: Expr, item: CheckType, container: CheckType): CheckType {
    switch (container.kind) {
      case "list":
      case "map": {
        const member = container.kind === "list" ? container.elem : container.key;
        if (!comparable(item, member)) {
          this.report(e, `'in' cannot find ${formatType(item)} in ${formatType(container)}`);
        }
        return BOOL;
      }
      case "dyn":
        return BOOL;
      default:
        this.report(e, `'in' needs a list or a map on the right, not ${formatType(container)}`);
        return BOOL;
    }
  }

  private inferIndex(e: Expr, container: CheckType, index: CheckType): CheckType {
    switch (container.kind) {
      case "list":
        if (!isNumeric(index) && index.kind !== "dyn") this.report(e, `a list index must be an int, not ${formatType(index)}`);
        return container.elem;
      case "map":
        if (!comparable(index, container.key)) {
          this.report(e, `the keys of ${formatType(container)} are ${formatType(container.key)}, not ${formatType(index)}`);
        }
        return container.value;
      case "dyn":
        return DYN;
      default:
        this.report(e, `cannot index ${formatType(container)}`);
        return DYN;
    }
  }

  /**
   * Finds the overloads of a function or method (operators included) that accept the
   * argument types. The result is the overloads' result type when they agree, else `dyn`.
   */
  private resolveCall(e: Expr, name: string, target: CheckType | undefined, args: CheckType[]): CheckType {
    const all = this.functions.get(name) ?? [];
    const shaped = all.filter((s) => (s.target !== undefined) === (target !== undefined));
    if (shaped.length === 0) {
      this.report(e, this.unknownCallMessage(name, target !== undefined, all.length > 0));
      return DYN;
    }
    const matching = shaped.filter(
      (s) =>
        s.args.length === args.length &&
        (target === undefined || s.target === undefined || accepts(s.target, target)) &&
        s.args.every((param, i) => accepts(param, args[i])),
    );
    if (matching.length === 0) {
      this.report(e, this.mismatchMessage(name, target, args));
      return DYN;
    }
    return join(matching.map((s) => s.result));
  }

  private unknownCallMessage(name: string, isMethod: boolean, existsOtherwise: boolean): string {
    if (existsOtherwise) {
      return isMethod ? `'${name}' is a function, not a method: call it as ${name}(...)` : `'${name}' is a method: call it as value.${name}(...)`;
    }
    const candidates = [...this.functions.keys()].filter((key) => /^[A-Za-z]/.test(key));
    return `unknown ${isMethod ? "method" : "function"} '${name}'${suggestion(name, candidates)}`;
  }

  private mismatchMessage(name: string, target: CheckType | undefined, args: CheckType[]): string {
    const types = args.map(formatType);
    const operator = OPERATORS.get(name);
    if (operator !== undefined && args.length === 2) {
      return ORDERING.has(name)
        ? `'${operator}' cannot compare ${types[0]} with ${types[1]}`
        : `'${operator}' cannot be applied to ${types[0]} and ${types[1]}`;
    }
    if (operator !== undefined) return `'${operator}' cannot be applied to ${types[0]}`;
    const call = target ? `${formatType(target)}.${name}(${types.join(", ")})` : `${name}(${types.join(", ")})`;
    return `no overload of '${name}' accepts ${call}`;
  }
}
