import { createHash } from "node:crypto";
import { fromJson, toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { TransferSchema, type Transfer } from "../../../../gen/tally/transactions/v1/transfer_pb";
import { inArray, lt, sql } from "drizzle-orm";
import { inLockOrder } from "../../../../platform/db/lock-order";
import { insertRows, recordset } from "../../../../platform/db/recordset";
import { TransactionRaced, withTransactionRetry } from "../../../../platform/db/retry";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import { GroupCommit } from "../../../../platform/group-commit";
import { idempotencyKeys, type StoredOutcome } from "../db/schema";
import type { TransactionsDb, TransactionsTx } from "../db/types";

/** JSON with object keys in order, so equal messages hash alike whatever order their maps were built in. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(",")}}`;
  }
  return JSON.stringify(value);
}

/** What a request asks for, without its idempotency key: two requests with the same fingerprint are the same request. */
export function fingerprint<S extends DescMessage>(schema: S, request: MessageShape<S> & { requestId: string }): string {
  return createHash("sha256").update(canonical(toJson(schema, { ...request, requestId: "" } as MessageShape<S>))).digest("hex");
}

/** A request to record under its key, with the ids of the transfers it will create. */
export interface KeyedRequest {
  /** The key: the caller's request id (callerRequestKey), checked already. */
  requestId: string;
  operation: string;
  requestHash: string;
  transferIds: string[];
}

/** An answer to store under its request's key. */
interface Answer {
  requestId: string;
  answer: Transfer[];
  outcome: StoredOutcome;
}

/** What recording a request under its key found: it is new, a replay of an earlier one, or refused. */
export type KeyOutcome = { transferIds: string[]; replay: boolean } | { error: DomainError };

/**
 * Idempotency keys. A request's key, its fingerprint and the transfers it
 * created are written in the same transaction as those transfers, so a key is
 * never recorded without its effect, nor an effect without its key; a replay
 * finds the transfers, and another request under the key is refused.
 */
export class IdempotencyKeys {
  /** Answers of concurrent requests, stored together in one statement. */
  private readonly answers: GroupCommit<Answer, Transfer[]>;

  constructor(
    private readonly db: TransactionsDb,
    private readonly ttlHours: number,
  ) {
    // One statement of answers at a time; those given meanwhile go in the next. Two answers for one
    // key (the request's own and a replay's that took its transfers over) go in two statements.
    this.answers = new GroupCommit(
      (groups) => this.storeAnswers(groups.flat()).then((stored) => stored.map((answer) => [answer])),
      { concurrency: 1, maxItems: 1000, onePerKey: true, name: "store answers", tieBy: "event" },
      (a) => [a.requestId],
    );
  }

  /** Records the key with the transfers the request will create (ids chosen beforehand), and creates them. */
  async run(
    requestId: string,
    operation: string,
    requestHash: string,
    transferIds: string[],
    create: (tx: TransactionsTx) => Promise<void>,
  ): Promise<{ transferIds: string[]; replay: boolean }> {
    const [outcome] = await this.runMany([{ requestId, operation, requestHash, transferIds }], async (tx) => {
      await create(tx);
      return new Map();
    });
    if ("error" in outcome) throw outcome.error;
    return outcome;
  }

  /**
   * run() for several requests in one transaction, each with its own outcome. `create` gets the
   * requests that claimed their keys and creates their transfers; a request whose transfers it
   * could not create (named with why) is refused and its key released, the others stand.
   */
  async runMany(
    requests: KeyedRequest[],
    create: (tx: TransactionsTx, claimed: KeyedRequest[]) => Promise<Map<string, DomainError>>,
  ): Promise<KeyOutcome[]> {
    const expiresAt = new Date(Date.now() + this.ttlHours * 3600_000);
    // Two groups racing on the same keys wait for one another.
    const sorted = inLockOrder(requests, (r) => r.requestId);
    return withTransactionRetry(() =>
      this.db.transaction(async (tx) => {
        const rows = await insertRows(
          tx,
          idempotencyKeys,
          sorted.map((r) => ({ requestId: r.requestId, operation: r.operation, requestHash: r.requestHash, outcome: { transferIds: r.transferIds }, expiresAt })),
          { onConflict: sql`do nothing`, returning: true },
        );
        const claimedIds = new Set(rows.map((r) => r.requestId));
        const claimed = requests.filter((r) => claimedIds.has(r.requestId));
        const taken = requests.filter((r) => !claimedIds.has(r.requestId)).map((r) => r.requestId);
        // Other requests hold these keys (each waited for that one to commit, if it was concurrent).
        const earlier = taken.length === 0 ? [] : await tx.select().from(idempotencyKeys).where(inArray(idempotencyKeys.requestId, taken));
        // Pruned between the insert and this read: free now, for the next attempt to claim.
        if (earlier.length < taken.length) throw new TransactionRaced("an idempotency key was pruned while it was claimed");
        const refused = claimed.length === 0 ? new Map<string, DomainError>() : await create(tx, claimed);
        if (refused.size > 0) await tx.delete(idempotencyKeys).where(inArray(idempotencyKeys.requestId, [...refused.keys()]));
        return requests.map((r): KeyOutcome => {
          const error = refused.get(r.requestId);
          if (error) return { error };
          if (claimedIds.has(r.requestId)) return { transferIds: r.transferIds, replay: false };
          const before = earlier.find((e) => e.requestId === r.requestId)!;
          if (before.operation !== r.operation || before.requestHash !== r.requestHash) {
            return { error: new DomainError(ErrorReason.IDEMPOTENCY_KEY_REUSED, "request_id was used before for a different request", "request_id") };
          }
          return { transferIds: before.outcome.transferIds, replay: true };
        });
      }),
    );
  }

  /**
   * Stores the answer to a request, for its replays, beside the transfers it created, unless one is
   * stored already: the first answer stands. Returns the answer stored, so every reply is the same.
   */
  async recordAnswer(requestId: string, transferIds: string[], answer: Transfer[]): Promise<Transfer[]> {
    const [stored] = await this.answers.submit([{ requestId, answer, outcome: { transferIds, answer: answer.map((t) => toJson(TransferSchema, t)) } }]);
    return stored;
  }

  /** One statement for the answers of a group; a second only to read the answers some keys had already. */
  private async storeAnswers(answers: Answer[]): Promise<Transfer[][]> {
    const v = recordset({ request_id: idempotencyKeys.requestId, outcome: idempotencyKeys.outcome }, answers.map((a) => ({ request_id: a.requestId, outcome: a.outcome })), "v");
    const written = await this.db.execute<{ request_id: string }>(
      sql`update ${idempotencyKeys} set outcome = v.outcome from ${v} where ${idempotencyKeys.requestId} = v.request_id and ${idempotencyKeys.outcome} -> 'answer' is null returning ${idempotencyKeys.requestId}`,
    );
    const ours = new Set(written.map((r) => r.request_id));
    const answeredBefore = answers.filter((a) => !ours.has(a.requestId));
    const earlier = answeredBefore.length === 0 ? new Map<string, Transfer[]>() : await this.answersOf(answeredBefore.map((a) => a.requestId));
    // A key pruned meanwhile has no answer to keep: the request's own stands.
    return answers.map((a) => (ours.has(a.requestId) ? a.answer : (earlier.get(a.requestId) ?? a.answer)));
  }

  /** The answers stored under the keys that have one. */
  private async answersOf(requestIds: string[]): Promise<Map<string, Transfer[]>> {
    const rows = await this.db.select().from(idempotencyKeys).where(inArray(idempotencyKeys.requestId, requestIds));
    return new Map(rows.flatMap((r) => (r.outcome.answer ? [[r.requestId, r.outcome.answer.map((json) => fromJson(TransferSchema, json))]] : [])));
  }

  /** The answer stored for a request, once there is one. */
  async answer(requestId: string): Promise<Transfer[] | undefined> {
    return (await this.answersOf([requestId])).get(requestId);
  }

  /** Keys past their time, kept at least the configured hours. */
  async prune(now = new Date()): Promise<void> {
    await this.db.delete(idempotencyKeys).where(lt(idempotencyKeys.expiresAt, now));
  }
}
