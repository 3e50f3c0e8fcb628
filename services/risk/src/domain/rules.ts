import { and, asc, desc, eq, sql } from "drizzle-orm";
import { callerRequestKey } from "../../../../platform/caller";
import { withTransactionRetry } from "../../../../platform/db/retry";
import { DomainError, ErrorReason, type FieldViolation } from "../../../../platform/errors";
import { newId } from "../../../../platform/ids";
import { cursorId, cursorSequence, decodePageToken, foreignToken, pageOf, pageSize, type Page } from "../../../../platform/paging";
import { rules, type RuleRow } from "../db/schema";
import type { RiskDb } from "../db/types";
import { compileRule } from "../rules/compile";
import { DEFAULT_RULES } from "./default-rules";
import { ACTIONS_OF_KIND, type RuleDraft, type RuleKindName } from "./rule-model";
import { requireId, requireText, requireToken } from "../../../../platform/validation";

/** The latest version of each rule (distinct on id, highest version). */
const latest = (db: RiskDb) =>
  db.selectDistinctOn([rules.id]).from(rules).orderBy(rules.id, desc(rules.version)).as("latest");

/**
 * Rules are data: stored, versioned (a change adds a version; old versions stay
 * for audit), and refused with the reason and position when their expression
 * does not compile or type-check.
 */
export class RuleStore {
  private readonly listeners: (() => void)[] = [];

  constructor(private readonly db: RiskDb) {}

  /** Called after every change this store makes (the rule cache listens). */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  /**
   * A new rule at version 1; under a request id (the caller's own: callerOf), once: the same
   * request again answers the rule it created.
   */
  async create(draft: RuleDraft, requestIdInput = "", caller = ""): Promise<RuleRow> {
    const requestId = requestIdInput === "" ? null : callerRequestKey(caller, requireToken(requestIdInput, "request_id", 128));
    validate(draft);
    const now = new Date();
    const [row] = await this.db
      .insert(rules)
      .values({ ...draft, id: newId(), version: 1, requestId, createdAt: now, updatedAt: now })
      .onConflictDoNothing({ target: rules.requestId, where: sql`request_id is not null` })
      .returning();
    if (row) {
      this.changed();
      return row;
    }
    // Created before under this request id (its insert committed first, if it raced this one).
    const [first] = await this.db.select().from(rules).where(and(eq(rules.requestId, requestId!), eq(rules.version, 1)));
    const same = (Object.keys(draft) as (keyof RuleDraft)[]).every((k) => first[k] === draft[k]);
    if (!same) throw new DomainError(ErrorReason.IDEMPOTENCY_KEY_REUSED, "request_id was used before for a different rule", "request_id");
    return first;
  }

  /** Saves a new version with the draft's fields; whether it is enabled stays as it was (EnableRule and DisableRule own that). */
  async update(ruleId: string, draft: RuleDraft): Promise<RuleRow> {
    return this.newVersion(ruleId, (current) => {
      if (draft.kind !== current.kind) {
        throw new DomainError(ErrorReason.INVALID_FIELD, "a rule's kind cannot change; create a new rule", "rule.kind");
      }
      validate(draft);
      return { ...draft, enabled: current.enabled };
    });
  }

  setEnabled(ruleId: string, enabled: boolean): Promise<RuleRow> {
    return this.newVersion(ruleId, (current) => (current.enabled === enabled ? undefined : { ...current, enabled }));
  }

  async get(ruleId: string, version = 0): Promise<RuleRow> {
    const id = requireId(ruleId, "rule_id");
    if (version < 0) throw new DomainError(ErrorReason.INVALID_FIELD, "version must not be negative", "version");
    const [row] = await this.db
      .select()
      .from(rules)
      .where(and(eq(rules.id, id), version > 0 ? eq(rules.version, version) : undefined))
      .orderBy(desc(rules.version))
      .limit(1);
    if (!row) throw new DomainError(ErrorReason.RULE_NOT_FOUND, `rule ${id}${version > 0 ? ` version ${version}` : ""} not found`, "rule_id");
    return row;
  }

  /** Rules in id order, the latest version of each (or every version, with history). */
  async list(kind: RuleKindName | undefined, includeHistory: boolean, size: number, token: string): Promise<Page<RuleRow>> {
    const limit = pageSize(size);
    const cursor = decodePageToken(token, ["id", "version"]);
    const after = cursor ? { id: cursorId(cursor.id), version: cursorVersion(cursor.version) } : undefined;
    const source = includeHistory ? rules : latest(this.db);
    const rows = (await this.db
      .select()
      .from(source)
      .where(
        and(
          kind ? eq(source.kind, kind) : undefined,
          after ? sql`(${source.id}, ${source.version}) > (${after.id}::uuid, ${after.version})` : undefined,
        ),
      )
      .orderBy(asc(source.id), asc(source.version))
      .limit(limit + 1)) as RuleRow[];
    return pageOf(rows, limit, (last) => ({ id: last.id, version: String(last.version) }));
  }

  /** The enabled rules of a kind, latest versions, in priority order. */
  async enabled(kind: RuleKindName): Promise<RuleRow[]> {
    const l = latest(this.db);
    return (await this.db
      .select()
      .from(l)
      .where(and(eq(l.kind, kind), eq(l.enabled, true)))
      .orderBy(asc(l.priority), asc(l.id))) as RuleRow[];
  }

  /** Grows with every change anywhere (versions are never deleted): replicas compare it to know when to reload. */
  async revision(): Promise<number> {
    const [row] = await this.db.select({ n: sql<number>`count(*)::int` }).from(rules);
    return row.n;
  }

  /** The default rules, once per installation whichever replica starts first. */
  async ensureDefaults(): Promise<void> {
    const now = new Date();
    const inserted = await this.db
      .insert(rules)
      .values(DEFAULT_RULES.map((r) => ({ ...r, version: 1, createdAt: now, updatedAt: now })))
      .onConflictDoNothing()
      .returning({ id: rules.id });
    if (inserted.length > 0) this.changed();
  }

  private async newVersion(ruleId: string, change: (current: RuleRow) => RuleDraft | undefined): Promise<RuleRow> {
    const id = requireId(ruleId, "rule_id");
    const row = await withTransactionRetry(() =>
      this.db.transaction(async (tx) => {
        // Changes to one rule queue here, so each reads the version the one before it wrote.
        await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`tally.risk.rule.${id}`}))`);
        const [current] = await tx.select().from(rules).where(eq(rules.id, id)).orderBy(desc(rules.version)).limit(1);
        if (!current) throw new DomainError(ErrorReason.RULE_NOT_FOUND, `rule ${id} not found`, "rule_id");
        const next = change(current);
        if (!next) return current;
        const [saved] = await tx
          .insert(rules)
          .values({
            id,
            version: current.version + 1,
            name: next.name,
            description: next.description,
            kind: next.kind,
            expression: next.expression,
            action: next.action,
            score: next.score,
            priority: next.priority,
            enabled: next.enabled,
            createdAt: current.createdAt,
            updatedAt: new Date(),
          })
          .returning();
        return saved;
      }),
    );
    this.changed();
    return row;
  }
}

/** Versions are int4 in the table: a larger one cannot come from a token this service issued. */
function cursorVersion(value: string): number {
  const version = cursorSequence(value);
  if (version > 2_147_483_647n) throw foreignToken();
  return Number(version);
}

/** Checks a draft, compiling its expression; every problem is reported with its field. */
function validate(draft: RuleDraft): void {
  requireText(draft.name, "rule.name", 100, true);
  requireText(draft.description, "rule.description", 1000);
  if (!ACTIONS_OF_KIND[draft.kind].includes(draft.action)) {
    throw new DomainError(ErrorReason.INVALID_FIELD, `a ${draft.kind} rule's action is one of ${ACTIONS_OF_KIND[draft.kind].join(", ")}`, "rule.action");
  }
  if (!Number.isInteger(draft.score) || draft.score < 0 || draft.score > 1000) {
    throw new DomainError(ErrorReason.INVALID_FIELD, "score is from 0 to 1000", "rule.score");
  }
  if (draft.action === "add_score" && draft.score === 0) {
    throw new DomainError(ErrorReason.INVALID_FIELD, "an add_score rule needs a score above 0", "rule.score");
  }
  if (!Number.isInteger(draft.priority) || Math.abs(draft.priority) > 1_000_000) {
    throw new DomainError(ErrorReason.INVALID_FIELD, "priority is from -1000000 to 1000000", "rule.priority");
  }
  // NUL first (PostgreSQL cannot store it); length and everything else are the compiler's to report.
  requireText(draft.expression, "rule.expression", Number.MAX_SAFE_INTEGER, true);
  const { issues } = compileRule(draft.kind, draft.expression);
  if (issues.length > 0) {
    const violations: FieldViolation[] = issues.map((i) => ({
      field: "rule.expression",
      description: `line ${i.line}, column ${i.column}: ${i.message}`,
    }));
    const first = issues[0];
    throw new DomainError(ErrorReason.RULE_INVALID, `rule expression is invalid: ${violations[0].description}`, violations, {
      line: String(first.line),
      column: String(first.column),
    });
  }
}

