import type { Logger } from "../../../../platform/logger";
import { compileRule, type CompiledRule, type RuleInput } from "../rules/compile";
import type { RuleRow, StoredHit } from "../db/schema";
import type { RuleKindName } from "./rule-model";
import type { RuleStore } from "./rules";

const WARN_EVERY_MS = 60_000;

interface Loaded {
  row: RuleRow;
  compiled: CompiledRule;
}

/**
 * The enabled rules, compiled once and kept in memory. A replica looks for
 * changes made elsewhere at most every refreshMs; changes it makes itself
 * take effect at once (invalidate).
 */
export class RuleSet {
  private loaded = new Map<RuleKindName, Loaded[]>();
  private revision = -1;
  private checkedAt = 0;
  // Bumped by every local change; a refresh that began before one does not count as fresh.
  private generation = 0;
  private refreshing: { generation: number; done: Promise<void> } | undefined;
  private readonly lastWarned = new Map<string, number>();
  evaluationErrors = 0;

  constructor(
    private readonly store: RuleStore,
    private readonly refreshMs: number,
    private readonly log: Logger,
  ) {}

  invalidate(): void {
    this.generation++;
    this.checkedAt = 0;
    this.revision = -1;
  }

  /**
   * Evaluates the enabled rules of a kind, in priority order; returns the ones that fired, and
   * those that could not be evaluated on this input, with the error and a score of 0 (what that
   * means is the caller's to decide).
   */
  async evaluate(kind: RuleKindName, input: RuleInput): Promise<StoredHit[]> {
    const hits: StoredHit[] = [];
    for (const { row, compiled } of await this.rules(kind)) {
      const outcome = compiled.evaluate(input);
      const hit = { ruleId: row.id, ruleVersion: row.version, ruleName: row.name, action: row.action };
      if ("error" in outcome) {
        // Counted, and logged once a minute.
        this.evaluationErrors++;
        const key = `${row.id}/${row.version}`;
        if (Date.now() - (this.lastWarned.get(key) ?? 0) > WARN_EVERY_MS) {
          this.lastWarned.set(key, Date.now());
          this.log.warn({ rule: row.id, version: row.version, error: outcome.error }, "rule evaluation failed (guard map keys with `in` or has())");
        }
        hits.push({ ...hit, score: 0, error: outcome.error });
      } else if (outcome.matched) {
        hits.push({ ...hit, score: row.score });
      }
    }
    return hits;
  }

  /** The rows of the enabled rules of a kind (for monitoring actions that need more than the hit). */
  async rules(kind: RuleKindName): Promise<Loaded[]> {
    if (Date.now() - this.checkedAt >= this.refreshMs) {
      try {
        await this.refreshed();
      } catch (err) {
        // The rules compiled last time stay in force while the database does not answer.
        if (this.revision < 0 && this.loaded.size === 0) throw err;
        this.log.warn({ err: (err as Error).message }, "rules not refreshed; using the ones loaded before");
      }
    }
    return this.loaded.get(kind) ?? [];
  }

  /** Joins the refresh under way if it began after the last local change; else refreshes again after it. */
  private async refreshed(): Promise<void> {
    for (;;) {
      const generation = this.generation;
      let entry = this.refreshing;
      if (entry?.generation !== generation) {
        const after = entry?.done.catch(() => {}) ?? Promise.resolve();
        const done: Promise<void> = after.then(() => this.refresh(generation));
        entry = { generation, done };
        const started = entry;
        this.refreshing = started;
        done.then(
          () => this.refreshing === started && (this.refreshing = undefined),
          () => this.refreshing === started && (this.refreshing = undefined),
        );
      }
      await entry.done;
      if (generation === this.generation) return;
    }
  }

  private async refresh(generation: number): Promise<void> {
    const revision = await this.store.revision();
    if (revision === this.revision && generation === this.generation) {
      this.checkedAt = Date.now();
      return;
    }
    const next = new Map<RuleKindName, Loaded[]>();
    for (const kind of ["assessment", "monitoring"] as const) {
      const rows = await this.store.enabled(kind);
      next.set(
        kind,
        rows.flatMap((row) => {
          const { rule, issues } = compileRule(row.kind, row.expression);
          if (!rule) {
            this.log.error({ rule: row.id, version: row.version, issues }, "stored rule does not compile; skipped");
            return [];
          }
          return [{ row, compiled: rule }];
        }),
      );
    }
    this.loaded = next;
    // A change made here while this refresh ran makes the next call refresh again.
    if (generation === this.generation) {
      this.revision = revision;
      this.checkedAt = Date.now();
    }
  }
}
