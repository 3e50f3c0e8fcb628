import { context, type Context } from "@opentelemetry/api";
import { eq } from "drizzle-orm";
import type { AccountService } from "../../../../gen/tally/account/v1/account_service_pb";
import type { Money } from "../../../../gen/tally/common/v1/money_pb";
import { RiskDecision, type Transfer } from "../../../../gen/tally/transactions/v1/transfer_pb";
import { callerRequestKey } from "../../../../platform/caller";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import { GroupCommit } from "../../../../platform/group-commit";
import type { ClientOf } from "../../../../platform/grpc/client";
import { newId } from "../../../../platform/ids";
import { requireCurrency, requireId, requireMetadata, requireText, requireToken } from "../../../../platform/validation";
import { LONGEST_HOLD_SECONDS } from "../config";
import { transfers, type TransferKindName, type TransferRow } from "../db/schema";
import type { TransactionsTx } from "../db/types";
import { riskOutcomeOf, transferMessage } from "../proto";
import type { AccountDirectory } from "./account-directory";
import type { IdempotencyKeys, KeyedRequest, KeyOutcome } from "./idempotency";
import type { Orchestrator } from "./orchestrator";
import { postedAmount, takenId, type NewTransfer, type Transfers } from "./transfers";

export interface NewMovement {
  /** Who asks (callerOf): a request id is the caller's own. */
  caller: string;
  requestId: string;
  fingerprint: string;
  kind: Exclude<TransferKindName, "reversal">;
  fromAccountId: string;
  toAccountId: string;
  amount: Money | undefined;
  description: string;
  metadata: Record<string, string>;
  transferId: string;
  /** For authorizations: seconds until the hold expires (0: the default). */
  expiresInSeconds?: bigint;
}

export interface OperationLimits {
  holdSeconds: number;
  reviewHoldSeconds: number;
  /** How long a replay waits for the original request to answer before it is told to try again later. */
  replayWaitMs: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A new movement to record under its key. */
interface MovementRecord extends KeyedRequest {
  row: NewTransfer;
  context: Context;
}

/** A movement as recorded: refused, a replay, or new with its transfer. */
type MovementOutcome = KeyOutcome & { created?: TransferRow };

// One group of new movements at a time: the ones that arrive meanwhile share the next transaction
// (on two cores, fewer and larger transactions cost less than the wait for the one before).
const MOVEMENT_GROUPS = { concurrency: 1, maxItems: 1000, onePerKey: true, name: "record transfers", tieBy: "event" as const };

/**
 * What the TransactionService does, request by request: validate, record the
 * request under its idempotency key together with its transfer, then drive
 * the transfer as far as it goes now, and store the answer with the key. A
 * replay gets that same answer.
 */
export class Operations {
  private readonly settlementAccounts = new Map<string, Promise<string>>();
  /** Concurrent movements' keys and transfers, written together: see recordMovements(). */
  private readonly movements: GroupCommit<MovementRecord, MovementOutcome>;

  constructor(
    private readonly transfers: Transfers,
    private readonly keys: IdempotencyKeys,
    private readonly orchestrator: Orchestrator,
    private readonly accounts: Pick<ClientOf<typeof AccountService>, "getSystemAccount">,
    private readonly directory: AccountDirectory,
    private readonly limits: OperationLimits,
  ) {
    // A request id or a transfer id is in one group at most, and in one group at a time.
    this.movements = new GroupCommit((groups) => this.recordMovements(groups.flat()).then((o) => o.map((x) => [x])), MOVEMENT_GROUPS, (m) => [`request:${m.requestId}`, `transfer:${m.row.id}`]);
  }

  /** Transfers, deposits, withdrawals and authorizations. */
  async move(m: NewMovement): Promise<Transfer> {
    const key = requestKey(m.caller, m.requestId);
    const money = requireMoney(m.amount);
    const description = requireText(m.description, "description", 1000);
    const metadata = requireMetadata(m.metadata);
    const id = m.transferId === "" ? newId() : requireId(m.transferId, "transfer_id");
    const [from, to] = await this.endpoints(m, money.currency);
    if (from === to) {
      const field = m.kind === "deposit" || m.kind === "withdrawal" ? "account_id" : "to_account_id";
      throw new DomainError(ErrorReason.ACCOUNTS_MUST_BE_DIFFERENT, "the accounts must be different", field);
    }
    // Unknown accounts and the wrong currency are bad input: refused before anything is recorded.
    const customerAccounts =
      m.kind === "deposit"
        ? [{ id: to, field: "account_id" }]
        : m.kind === "withdrawal"
          ? [{ id: from, field: "account_id" }]
          : [{ id: from, field: "from_account_id" }, { id: to, field: "to_account_id" }];
    await this.directory.requireAccounts(customerAccounts, money.currency);
    const expires = m.expiresInSeconds ?? 0n;
    if (expires < 0n || expires > BigInt(LONGEST_HOLD_SECONDS)) throw new DomainError(ErrorReason.INVALID_FIELD, "expires_in_seconds is from 0 to a year", "expires_in_seconds");
    const holdSeconds = m.kind === "authorization" ? (expires > 0n ? expires : BigInt(this.limits.holdSeconds)) : BigInt(this.limits.reviewHoldSeconds);
    const row: NewTransfer = {
      id,
      requestId: m.requestId,
      kind: m.kind,
      status: "created",
      step: "assess",
      fromAccountId: from,
      toAccountId: to,
      amount: money.amount,
      currency: money.currency,
      holdSeconds,
      description,
      metadata,
    };
    const [outcome] = await this.movements.submit([{ requestId: key, operation: m.kind, requestHash: m.fingerprint, transferIds: [id], row, context: context.active() }]);
    if ("error" in outcome) throw outcome.error;
    const [transfer] = outcome.replay ? await this.earlierAnswer(key, outcome.transferIds) : await this.finish(key, [id], [outcome.created!]);
    return transfer;
  }

  /** One transaction for the keys and transfers of a group of new movements, each with its own outcome. */
  private async recordMovements(group: MovementRecord[]): Promise<MovementOutcome[]> {
    const created = new Map<string, TransferRow>();
    const outcomes = await this.keys.runMany(group, async (tx, claimed) => {
      created.clear(); // a transaction run again starts afresh
      // What it creates is claimed by its request from that commit: no one else drives it first.
      const leaseUntil = new Date(Date.now() + this.orchestrator.leaseMs);
      const records = claimed as MovementRecord[];
      const rows = await this.transfers.insertMany(tx, records.map((r) => ({ row: { ...r.row, leaseUntil }, context: r.context })));
      const refused = new Map<string, DomainError>();
      rows.forEach((row, i) => (row ? created.set(records[i].requestId, row) : refused.set(records[i].requestId, takenId(records[i].row.id))));
      return refused;
    });
    return outcomes.map((o, i) => ("error" in o || o.replay ? o : { ...o, created: created.get(group[i].requestId) }));
  }

  /** Posts all (amount 0) or part of an authorization's hold. */
  async capture(caller: string, requestId: string, fingerprint: string, transferId: string, amount: bigint): Promise<Transfer> {
    if (amount < 0n) throw new DomainError(ErrorReason.AMOUNT_MUST_BE_POSITIVE, "amount must not be negative", "amount");
    const id = requireId(transferId, "transfer_id");
    const key = requestKey(caller, requestId);
    const [row] = await this.run(key, "capture", fingerprint, [id], async (tx, leaseUntil) => {
      const hold = await this.lockHeld(tx, id, "capture");
      if (amount > hold.amount) throw new DomainError(ErrorReason.EXCEEDS_PENDING_AMOUNT, `at most ${hold.amount} can be captured`, "amount");
      return [(await this.transfers.change(id, { step: "capture", leaseUntil, ...this.orchestrator.finalizer(hold, amount) }, { step: "done" }, tx))!];
    });
    return row;
  }

  /** Releases an authorization's hold. */
  async void(caller: string, requestId: string, fingerprint: string, transferId: string, reasonInput: string): Promise<Transfer> {
    const id = requireId(transferId, "transfer_id");
    const reason = requireText(reasonInput, "reason", 500);
    const key = requestKey(caller, requestId);
    const [row] = await this.run(key, "void", fingerprint, [id], async (tx, leaseUntil) => {
      const hold = await this.lockHeld(tx, id, "void");
      return [(await this.transfers.change(id, { step: "void", failureMessage: reason, leaseUntil, ...this.orchestrator.finalizer(hold) }, { step: "done" }, tx))!];
    });
    return row;
  }

  /** A new transfer back from the receiver, for all that remains (0) or part of a posted transfer. */
  async reverse(caller: string, requestId: string, fingerprint: string, transferId: string, amount: bigint, reasonInput: string): Promise<[Transfer, Transfer]> {
    if (amount < 0n) throw new DomainError(ErrorReason.AMOUNT_MUST_BE_POSITIVE, "amount must not be negative", "amount");
    const id = requireId(transferId, "transfer_id");
    const reason = requireText(reasonInput, "reason", 500);
    const key = requestKey(caller, requestId);
    const reversalId = newId();
    const [reversal, original] = await this.run(key, "reverse", fingerprint, [reversalId, id], async (tx, leaseUntil) => {
      const [target] = await tx.select().from(transfers).where(eq(transfers.id, id)).for("update");
      if (!target) throw new DomainError(ErrorReason.TRANSFER_NOT_FOUND, `transfer ${id} not found`, "transfer_id");
      if (target.kind === "reversal") throw new DomainError(ErrorReason.TRANSFER_NOT_REVERSIBLE, "a reversal cannot be reversed", "transfer_id");
      const posted = postedAmount(target);
      if (target.status === "reversed") throw new DomainError(ErrorReason.TRANSFER_ALREADY_REVERSED, `transfer ${id} is already reversed`, "transfer_id");
      if (target.status !== "posted") throw new DomainError(ErrorReason.TRANSFER_NOT_REVERSIBLE, `a ${target.status} transfer cannot be reversed`, "transfer_id");
      const remaining = posted - target.reversedAmount - target.reversalReserved;
      const take = amount === 0n ? remaining : amount;
      if (take === 0n || take > remaining) {
        throw new DomainError(ErrorReason.REVERSAL_EXCEEDS_AMOUNT, `${remaining} remains to reverse (${target.reversalReserved} in reversals on their way)`, "amount");
      }
      // Set aside now, so concurrent reversals cannot together exceed the transfer; settled when the reversal ends.
      const [reserved] = await tx.update(transfers).set({ reversalReserved: target.reversalReserved + take, updatedAt: new Date() }).where(eq(transfers.id, id)).returning();
      const reversal = await this.transfers.insert(tx, {
        id: reversalId,
        requestId,
        kind: "reversal",
        status: "created",
        // Assessed as any movement (DESIGN §5): it takes money from the account that received it.
        step: "assess",
        fromAccountId: target.toAccountId,
        toAccountId: target.fromAccountId,
        amount: take,
        currency: target.currency,
        reversesTransferId: id,
        description: reason,
        // Should risk send it to review: how long its hold waits for an analyst.
        holdSeconds: BigInt(this.limits.reviewHoldSeconds),
        leaseUntil,
      });
      return [reversal, reserved];
    });
    return [reversal, original];
  }

  /**
   * Records the request under its key (requestKey) with its transfers (or finds the earlier one), drives them, and returns
   * them as they then are; that answer is stored with the key, so a replay gets the same answer.
   */
  private async run(
    key: string,
    operation: string,
    fingerprint: string,
    ids: string[],
    create: (tx: TransactionsTx, leaseUntil: Date) => Promise<TransferRow[]>,
  ): Promise<Transfer[]> {
    let rows: TransferRow[] = [];
    const { transferIds, replay } = await this.keys.run(key, operation, fingerprint, ids, async (tx) => {
      // What it creates or moves on is claimed by this request from its commit: no one else drives it first.
      rows = await create(tx, new Date(Date.now() + this.orchestrator.leaseMs));
    });
    return replay ? this.earlierAnswer(key, transferIds) : this.finish(key, transferIds, rows);
  }

  /**
   * Drives what the request created or moved on (`rows`, claimed by it), and stores the answer it
   * gives with its key; returns the answer stored, which is an earlier one if a replay stored it first.
   */
  private async finish(key: string, transferIds: string[], rows: TransferRow[]): Promise<Transfer[]> {
    const driven = [];
    // A transfer at rest (the original of a reversal) has nothing to drive.
    for (const row of rows) if (row.step !== "done") driven.push(await this.orchestrator.drive(row.id, row));
    // One transfer: as driven. Several (a reversal and its original): driving one changes the other.
    const answer = (rows.length === 1 && driven.length === 1 ? driven : await this.transfers.find(transferIds)).map(transferMessage);
    return this.keys.recordAnswer(key, transferIds, answer);
  }

  /**
   * A replay's answer: the one stored for the request. While the request is still at work its
   * replay waits for it, and past the wait is told to try again later (IDEMPOTENCY_KEY_IN_USE). A
   * request gone without answering (its replica died, or it failed) has its replay take its
   * transfers over: drive them on, as that request would have, and store the answer in its place.
   */
  private async earlierAnswer(key: string, ids: string[]): Promise<Transfer[]> {
    const until = Date.now() + this.limits.replayWaitMs;
    for (let looks = 0; ; ) {
      const answer = await this.keys.answer(key);
      if (answer) return answer;
      const rows = await this.takeOver(ids);
      if (rows) return this.finish(key, ids, rows);
      if (Date.now() > until) throw new DomainError(ErrorReason.IDEMPOTENCY_KEY_IN_USE, "the request under this request_id is still at work; try again later", "request_id");
      // Looking less often the longer it waits: many replays waiting at once do not flood the database.
      await sleep(Math.min(250, 20 * 2 ** looks++));
    }
  }

  /** Claims a request's transfers that are not at rest; undefined while another driver has any of them. */
  private async takeOver(ids: string[]): Promise<TransferRow[] | undefined> {
    const claimed: TransferRow[] = [];
    for (const row of await this.transfers.find(ids)) {
      const mine = row.step === "done" ? row : await this.transfers.claim(row.id, this.orchestrator.leaseMs);
      if (!mine) {
        // Another driver has it (or it came to rest meanwhile): let go of the rest, and look again.
        for (const taken of claimed) if (taken.step !== "done") await this.transfers.release(taken.id, taken.leaseUntil);
        return undefined;
      }
      claimed.push(mine);
    }
    return claimed;
  }

  private async lockHeld(tx: TransactionsTx, id: string, action: string): Promise<TransferRow> {
    const [hold] = await tx.select().from(transfers).where(eq(transfers.id, id)).for("update");
    if (!hold) throw new DomainError(ErrorReason.TRANSFER_NOT_FOUND, `transfer ${id} not found`, "transfer_id");
    if (hold.kind !== "authorization") throw new DomainError(ErrorReason.INVALID_STATE_TRANSITION, `only an authorization can ${action}`, "transfer_id");
    if (hold.status !== "held" || hold.step !== "done") {
      throw new DomainError(ErrorReason.INVALID_STATE_TRANSITION, `a ${hold.status} authorization cannot ${action}`, "transfer_id");
    }
    if (action === "capture" && riskOutcomeOf(hold)?.decision !== RiskDecision.APPROVE) {
      throw new DomainError(ErrorReason.INVALID_STATE_TRANSITION, "the authorization awaits risk's decision", "transfer_id");
    }
    return hold;
  }

  /** The two accounts of a movement: deposits and withdrawals go through the currency's settlement account. */
  private async endpoints(m: NewMovement, currency: string): Promise<[string, string]> {
    switch (m.kind) {
      case "deposit":
        return [await this.settlement(currency), requireId(m.toAccountId, "account_id")];
      case "withdrawal":
        return [requireId(m.fromAccountId, "account_id"), await this.settlement(currency)];
      default:
        return [requireId(m.fromAccountId, "from_account_id"), requireId(m.toAccountId, "to_account_id")];
    }
  }

  private settlement(currency: string): Promise<string> {
    let id = this.settlementAccounts.get(currency);
    if (!id) {
      id = this.accounts.getSystemAccount({ currency }).then((r) => r.account!.id);
      id.catch(() => this.settlementAccounts.delete(currency));
      this.settlementAccounts.set(currency, id);
    }
    return id;
  }
}

/** A request's idempotency key: its id, checked, as the caller's own. */
function requestKey(caller: string, requestId: string): string {
  return callerRequestKey(caller, requireToken(requestId, "request_id", 128));
}

function requireMoney(amount: Money | undefined): Money {
  if (!amount) throw new DomainError(ErrorReason.MISSING_FIELD, "amount is required", "amount");
  if (amount.amount <= 0n) throw new DomainError(ErrorReason.AMOUNT_MUST_BE_POSITIVE, "amount must be positive", "amount.amount");
  requireCurrency(amount.currency, "amount.currency");
  return amount;
}

