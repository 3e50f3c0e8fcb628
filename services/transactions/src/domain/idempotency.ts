import { createHash } from "node:crypto";
import { fromJson, toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { TransferSchema, type Transfer } from "../../../../gen/tally/transactions/v1/transfer_pb";
import { eq, lt } from "drizzle-orm";
import { withTransactionRetry } from "../../../../platform/db/retry";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import { requireToken } from "../../../../platform/validation";
import { idempotencyKeys } from "../db/schema";
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

/**
 * Idempotency keys. A request's key, its fingerprint and the transfers it
 * created are written in the same transaction as those transfers, so a key is
 * never recorded without its effect, nor an effect without its key; a replay
 * finds the transfers, and another request under the key is refused.
 */
export class IdempotencyKeys {
  constructor(
    private readonly db: TransactionsDb,
    private readonly ttlHours: number,
  ) {}

  /** Records the key with the transfers the request will create (ids chosen beforehand), and creates them. */
  async run(
    requestIdInput: string,
    operation: string,
    requestHash: string,
    transferIds: string[],
    create: (tx: TransactionsTx) => Promise<void>,
  ): Promise<{ transferIds: string[]; replay: boolean }> {
    const requestId = requireToken(requestIdInput, "request_id", 128);
    return withTransactionRetry(() =>
      this.db.transaction(async (tx) => {
        const [claimed] = await tx
          .insert(idempotencyKeys)
          .values({ requestId, operation, requestHash, outcome: { transferIds }, expiresAt: new Date(Date.now() + this.ttlHours * 3600_000) })
          .onConflictDoNothing()
          .returning();
        if (!claimed) {
          // Another request holds the key (it waited for that one to commit, if it was concurrent).
          const [earlier] = await tx.select().from(idempotencyKeys).where(eq(idempotencyKeys.requestId, requestId));
          if (earlier.operation !== operation || earlier.requestHash !== requestHash) {
            throw new DomainError(ErrorReason.IDEMPOTENCY_KEY_REUSED, "request_id was used before for a different request", "request_id");
          }
          return { transferIds: earlier.outcome.transferIds, replay: true };
        }
        await create(tx);
        return { transferIds, replay: false };
      }),
    );
  }

  /** Stores the answer the request gave, for its replays, beside the transfers it created. */
  async recordAnswer(requestId: string, transferIds: string[], answer: Transfer[]): Promise<void> {
    await this.db
      .update(idempotencyKeys)
      .set({ outcome: { transferIds, answer: answer.map((t) => toJson(TransferSchema, t)) } })
      .where(eq(idempotencyKeys.requestId, requestId));
  }

  /** The answer a request gave, once it has. */
  async answer(requestId: string): Promise<Transfer[] | undefined> {
    const [key] = await this.db.select({ outcome: idempotencyKeys.outcome }).from(idempotencyKeys).where(eq(idempotencyKeys.requestId, requestId));
    const answer = key?.outcome && "answer" in key.outcome ? key.outcome.answer : undefined;
    return answer?.map((json) => fromJson(TransferSchema, json));
  }

  /** Keys past their time, kept at least the configured hours. */
  async prune(now = new Date()): Promise<void> {
    await this.db.delete(idempotencyKeys).where(lt(idempotencyKeys.expiresAt, now));
  }
}
