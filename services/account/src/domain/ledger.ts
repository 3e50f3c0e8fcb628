import { metrics, trace } from "@opentelemetry/api";
import { inArray } from "drizzle-orm";
import { PostingResult } from "../../../../gen/tally/account/v1/ledger_pb";
import { isId } from "../../../../platform/ids";
import { TransactionRaced, withTransactionRetry } from "../../../../platform/db/retry";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import type { OutboxWriter } from "../../../../platform/outbox/append";
import { ledgerTransfers } from "../db/schema";
import type { AccountDb, AccountTx } from "../db/types";
import type { TransferRecord } from "./model";
import { GroupCommit, type GroupCommitOptions } from "../../../../platform/group-commit";
import { pipelined } from "../../../../platform/db/pipeline";
import { loadRefusals, lockAccounts, loadTransfers, writeEffects } from "./ledger-store";
import { applyBatch, MAX_BATCH, noEffects, type PostingOutcome, type PostingRequest } from "./posting";

const unique = (ids: string[]) => [...new Set(ids.filter(isId))];

/**
 * Posts batches of transfers. Concurrent batches are committed together
 * (group-commit.ts), each group in one database transaction: the accounts
 * involved are locked in id order, each batch is applied in memory in turn
 * (see posting.ts), and the transfers, entries, balances and the group's
 * event are written together.
 */
export class Ledger {
  private readonly batchSize = metrics.getMeter("tally.ledger").createHistogram("ledger.batch.size", {
    unit: "{transfer}",
    description: "Transfers posted per ledger transaction",
    advice: { explicitBucketBoundaries: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] },
  });

  private readonly group: GroupCommit<PostingRequest, PostingOutcome>;

  constructor(
    private readonly db: AccountDb,
    private readonly outbox: OutboxWriter,
    private readonly afterCommit: () => void = () => {},
    groupCommit: GroupCommitOptions = { concurrency: 4, maxItems: MAX_BATCH },
  ) {
    // A posting locks its two accounts (a hold's, when it names none, are locked by the transaction all the same).
    this.group = new GroupCommit((batches) => this.commit(batches), { name: "ledger commit", ...groupCommit }, (r) => [r.debitAccountId, r.creditAccountId]);
  }

  async postTransfers(requests: PostingRequest[]): Promise<PostingOutcome[]> {
    if (requests.length === 0) throw new DomainError(ErrorReason.BATCH_EMPTY, "transfers must not be empty", "transfers");
    if (requests.length > MAX_BATCH) {
      throw new DomainError(ErrorReason.BATCH_TOO_LARGE, `at most ${MAX_BATCH} transfers per batch`, "transfers");
    }
    const outcomes = await this.group.submit(requests);
    annotate(requests, outcomes);
    return outcomes;
  }

  /** One transaction for a group of batches; each batch's outcomes, in order. */
  private async commit(batches: PostingRequest[][]): Promise<PostingOutcome[][]> {
    const outcomes = await withTransactionRetry(() => this.db.transaction((tx) => this.apply(tx, batches)));
    this.afterCommit();
    this.batchSize.record(batches.reduce((n, b) => n + b.length, 0));
    return outcomes;
  }

  async lookupTransfers(ids: string[]): Promise<TransferRecord[]> {
    if (ids.length > MAX_BATCH) {
      throw new DomainError(ErrorReason.BATCH_TOO_LARGE, `at most ${MAX_BATCH} transfer ids per lookup`, "transfer_ids");
    }
    const valid = unique(ids);
    if (valid.length === 0) return [];
    return this.db.select().from(ledgerTransfers).where(inArray(ledgerTransfers.id, valid));
  }

  private async apply(tx: AccountTx, batches: PostingRequest[][]): Promise<PostingOutcome[][]> {
    const requests = batches.flat();
    const pendingIds = unique(requests.map((r) => r.pendingId));
    const referenced = new Set(pendingIds);
    // Holds name their accounts: find them before locking (re-checked below).
    const holds = await loadTransfers(tx, pendingIds);
    const accountIds = unique([
      ...requests.flatMap((r) => [r.debitAccountId, r.creditAccountId]),
      ...[...holds.values()].flatMap((h) => [h.debitAccountId, h.creditAccountId]),
    ]).sort();
    // Read after locking (run in this order, in one round trip): what we see now cannot change until we commit.
    const requestIds = unique(requests.map((r) => r.id));
    const [lockedAccounts, transfers, refusals] = await pipelined([
      lockAccounts(tx, accountIds),
      loadTransfers(tx, unique([...requestIds, ...pendingIds])),
      loadRefusals(tx, requestIds),
    ]);
    for (const t of transfers.values()) {
      if (t.mode === "pending" && referenced.has(t.id) && !(lockedAccounts.has(t.debitAccountId) && lockedAccounts.has(t.creditAccountId))) {
        // A hold this batch refers to appeared after its accounts were chosen.
        throw new TransactionRaced(`hold ${t.id} appeared with accounts not locked`);
      }
    }
    const view = { accounts: lockedAccounts, transfers, refusals };
    const [effects, now] = [noEffects(), new Date()];
    const outcomes = batches.map((batch) => applyBatch(batch, view, now, effects).outcomes);
    await writeEffects(tx, effects, this.outbox);
    return outcomes;
  }
}

/** The posting on the caller's span: the batch's size, and each transfer's accounts, amount and result as an event. */
function annotate(requests: PostingRequest[], outcomes: PostingOutcome[]): void {
  const span = trace.getActiveSpan();
  if (!span?.isRecording()) return;
  span.setAttribute("tally.ledger.batch_size", requests.length);
  for (const outcome of outcomes) {
    const request = requests[outcome.index];
    span.addEvent("transfer posted", {
      "tally.transfer.id": outcome.transferId,
      "tally.account.debit_id": request.debitAccountId,
      "tally.account.credit_id": request.creditAccountId,
      "tally.amount": String(request.amount),
      "tally.currency": request.currency,
      "tally.ledger.result": PostingResult[outcome.result] ?? String(outcome.result),
    });
  }
}
