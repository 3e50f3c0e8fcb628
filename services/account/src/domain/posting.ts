import { PostingResult } from "../../../../gen/tally/account/v1/ledger_pb";
import { isId } from "../../../../platform/ids";
import { INT64_MAX, isKnownCurrency } from "../../../../platform/money";
import { metadataProblem, sameMetadata } from "../../../../platform/validation";
import {
  availableBalance,
  isLimited,
  postedBalance,
  type AccountState,
  type NewEntry,
  type PostingModeName,
  type TransferRecord,
} from "./model";

export { PostingResult };

/** One item of a PostTransfers request, decoded but not yet validated. */
export interface PostingRequest {
  id: string;
  debitAccountId: string;
  creditAccountId: string;
  amount: bigint;
  currency: string;
  mode: PostingModeName | undefined;
  pendingId: string;
  timeoutSeconds: bigint;
  linked: boolean;
  metadata: Record<string, string>;
}

export interface PostingOutcome {
  index: number;
  transferId: string;
  result: PostingResult;
  /** The transfer as stored, for OK and EXISTS. */
  transfer?: TransferRecord;
}

/** What the ledger knows before the batch: locked accounts, the transfers the batch refers to, and which of its ids were refused before. */
export interface LedgerView {
  accounts: Map<string, AccountState>;
  transfers: Map<string, TransferRecord>;
  refusals: Map<string, PostingResult>;
}

/** One id refused for what the ledger held at the time: it stays refused (see ledgerRefusals). */
export interface Refusal {
  id: string;
  result: PostingResult;
}

/** What a batch changes, to be written in one transaction. */
export interface BatchEffects {
  inserted: TransferRecord[];
  /** The same transfers by id, to finalize a hold created earlier in the batch. */
  insertedById: Map<string, TransferRecord>;
  /** Pending transfers whose state this batch changed (posted, voided). */
  finalized: TransferRecord[];
  entries: NewEntry[];
  /** Accounts whose balances changed, in their final state. */
  accounts: Map<string, AccountState>;
  refused: Refusal[];
}

export const noEffects = (): BatchEffects => ({ inserted: [], insertedById: new Map(), finalized: [], entries: [], accounts: new Map(), refused: [] });

export const MAX_BATCH = 1000;
export const MAX_TIMEOUT_SECONDS = 366n * 24n * 3600n;

/**
 * Applies a batch to an in-memory view of the ledger, TigerBeetle-style:
 * items in order, each with its own result; linked items form chains that
 * apply all or nothing. Pure: the caller loads the view under row locks and
 * writes the effects back in the same transaction.
 */
export function applyBatch(
  requests: PostingRequest[],
  view: LedgerView,
  now: Date,
  // Several batches committed together (group commit) add to the same effects, each on what the ones before it left.
  effects: BatchEffects = noEffects(),
): { outcomes: PostingOutcome[]; effects: BatchEffects } {
  const outcomes: PostingOutcome[] = [];
  let start = 0;
  while (start < requests.length) {
    let end = start;
    while (requests[end].linked && end < requests.length - 1) end++;
    const chain = requests.slice(start, end + 1);
    const chainOpen = requests[end].linked;
    outcomes.push(...applyChain(chain, start, chainOpen, view, effects, now));
    start = end + 1;
  }
  return { outcomes, effects };
}

function applyChain(
  chain: PostingRequest[],
  offset: number,
  chainOpen: boolean,
  view: LedgerView,
  effects: BatchEffects,
  now: Date,
): PostingOutcome[] {
  const scratch = new Scratch(view);
  const outcomes: PostingOutcome[] = [];
  let failedAt = -1;
  let refused = false;
  for (let i = 0; i < chain.length; i++) {
    const outcome: ItemOutcome = chainOpen && i === chain.length - 1
      ? { result: PostingResult.LINKED_EVENT_CHAIN_OPEN }
      : applyOne(chain[i], scratch, now);
    outcomes.push({ index: offset + i, transferId: chain[i].id, result: outcome.result, transfer: outcome.transfer });
    if (outcome.result !== PostingResult.OK && outcome.result !== PostingResult.EXISTS) {
      failedAt = i;
      refused = outcome.refused === true;
      break;
    }
  }
  if (failedAt >= 0) {
    // All or nothing: the chain's other items report the failure of the link.
    const failed = chain.map((item, i) =>
      i === failedAt ? outcomes[i] : { index: offset + i, transferId: item.id, result: PostingResult.LINKED_EVENT_FAILED },
    );
    // Refused for what the ledger holds (not for a malformed request): the ids stay refused.
    if (refused) {
      for (const f of failed) {
        if (!isId(f.transferId) || view.transfers.has(f.transferId) || view.refusals.has(f.transferId)) continue;
        view.refusals.set(f.transferId, f.result);
        effects.refused.push({ id: f.transferId, result: f.result });
      }
    }
    return failed;
  }
  scratch.commitInto(view, effects);
  return outcomes;
}

/** Copy-on-write changes of one chain, discarded when the chain fails. */
class Scratch {
  readonly accounts = new Map<string, AccountState>();
  readonly transfers = new Map<string, TransferRecord>();
  readonly inserted: TransferRecord[] = [];
  readonly finalized = new Map<string, TransferRecord>();
  readonly entries: NewEntry[] = [];

  constructor(private readonly view: LedgerView) {}

  account(id: string): AccountState | undefined {
    return this.accounts.get(id) ?? this.view.accounts.get(id);
  }

  transfer(id: string): TransferRecord | undefined {
    return this.transfers.get(id) ?? this.view.transfers.get(id);
  }

  refusal(id: string): PostingResult | undefined {
    return this.view.refusals.get(id);
  }

  /** A private copy of an account to change. */
  mutableAccount(id: string): AccountState {
    let a = this.accounts.get(id);
    if (!a) {
      a = { ...this.view.accounts.get(id)! };
      this.accounts.set(id, a);
    }
    return a;
  }

  insert(t: TransferRecord): void {
    this.transfers.set(t.id, t);
    this.inserted.push(t);
  }

  finalize(pending: TransferRecord, state: TransferRecord["state"], postedAmount: bigint): void {
    const updated = { ...pending, state, postedAmount };
    this.transfers.set(pending.id, updated);
    this.finalized.set(pending.id, updated);
  }

  entry(accountId: string, counterpartyAccountId: string, t: TransferRecord, direction: NewEntry["direction"], layer: NewEntry["layer"], event: NewEntry["event"], amount: bigint): void {
    const a = this.account(accountId)!;
    this.entries.push({
      accountId,
      transferId: t.id,
      counterpartyAccountId,
      direction,
      layer,
      event,
      amount,
      currency: t.currency,
      postedBalanceAfter: postedBalance(a),
      availableBalanceAfter: availableBalance(a),
    });
  }

  commitInto(view: LedgerView, effects: BatchEffects): void {
    for (const [id, a] of this.accounts) {
      a.version += 1n;
      view.accounts.set(id, a);
      effects.accounts.set(id, a);
    }
    for (const [id, t] of this.transfers) view.transfers.set(id, t);
    for (const t of this.inserted) {
      effects.inserted.push(t);
      effects.insertedById.set(t.id, t);
    }
    for (const t of this.finalized.values()) {
      // A hold created earlier in this batch is inserted in its final state instead (in its place, not
      // over it: that record is also the result its creator is answered with, as it was created).
      const inserted = effects.insertedById.get(t.id);
      if (inserted) {
        effects.inserted[effects.inserted.indexOf(inserted)] = t;
        effects.insertedById.set(t.id, t);
      } else effects.finalized.push(t);
    }
    effects.entries.push(...this.entries);
  }
}

/** `refused`: refused for what the ledger holds, so the id is spent. */
type ItemOutcome = { result: PostingResult; transfer?: TransferRecord; refused?: boolean };

function applyOne(req: PostingRequest, s: Scratch, now: Date): ItemOutcome {
  const invalid = validate(req);
  if (invalid !== undefined) return { result: invalid };
  const existing = s.transfer(req.id);
  if (existing) {
    // Another request under the id learns only that: the transfer stored is not its to see.
    return sameFields(existing, req, s) ? { result: PostingResult.EXISTS, transfer: existing } : { result: PostingResult.EXISTS_WITH_DIFFERENT_FIELDS };
  }
  // Refused before: so it stays, however the ledger has changed since.
  const refusal = s.refusal(req.id);
  if (refusal !== undefined) return { result: refusal };
  const outcome = req.mode === "post" || req.mode === "pending" ? applyNew(req, s, now) : applyFinalize(req, s, now);
  return outcome.result === PostingResult.OK ? outcome : { ...outcome, refused: true };
}

/** Checks that need no state. */
export function validate(req: PostingRequest): PostingResult | undefined {
  if (!isId(req.id)) return PostingResult.INVALID_ID;
  if (req.mode === undefined) return PostingResult.INVALID_MODE;
  if (metadataProblem(req.metadata) !== undefined) return PostingResult.INVALID_METADATA;
  if (req.currency !== "" && !isKnownCurrency(req.currency)) return PostingResult.UNKNOWN_CURRENCY;
  if (req.mode === "post" || req.mode === "pending") {
    if (!isId(req.debitAccountId) || !isId(req.creditAccountId)) return PostingResult.INVALID_ID;
    if (req.debitAccountId === req.creditAccountId) return PostingResult.ACCOUNTS_MUST_BE_DIFFERENT;
    if (req.amount <= 0n) return PostingResult.AMOUNT_MUST_BE_POSITIVE;
    if (req.currency === "") return PostingResult.UNKNOWN_CURRENCY;
    if (req.pendingId !== "") return PostingResult.PENDING_ID_NOT_ALLOWED;
    if (req.mode === "post" && req.timeoutSeconds !== 0n) return PostingResult.INVALID_TIMEOUT;
    if (req.timeoutSeconds < 0n || req.timeoutSeconds > MAX_TIMEOUT_SECONDS) return PostingResult.INVALID_TIMEOUT;
    return undefined;
  }
  if (req.pendingId === "") return PostingResult.PENDING_ID_REQUIRED;
  if (!isId(req.pendingId)) return PostingResult.INVALID_ID;
  if (req.pendingId === req.id) return PostingResult.PENDING_TRANSFER_NOT_FOUND;
  if ((req.debitAccountId !== "" && !isId(req.debitAccountId)) || (req.creditAccountId !== "" && !isId(req.creditAccountId))) {
    return PostingResult.INVALID_ID;
  }
  if (req.amount < 0n) return PostingResult.AMOUNT_MUST_BE_POSITIVE;
  if (req.timeoutSeconds !== 0n) return PostingResult.INVALID_TIMEOUT;
  return undefined;
}

/**
 * Whether a request with an id already used asks for what was done under it. A finalize may leave
 * out the hold's accounts and currency; no amount asks for the whole hold, so it matches a capture
 * of the whole hold only, never a partial one.
 */
function sameFields(t: TransferRecord, req: PostingRequest, s: Scratch): boolean {
  const finalizes = req.mode === "post_pending" || req.mode === "void_pending";
  const amount = req.amount === 0n && finalizes ? s.transfer(req.pendingId)?.amount : req.amount;
  return (
    t.mode === req.mode &&
    (req.debitAccountId === "" ? finalizes : t.debitAccountId === req.debitAccountId) &&
    (req.creditAccountId === "" ? finalizes : t.creditAccountId === req.creditAccountId) &&
    t.amount === amount &&
    (req.currency === "" ? finalizes : t.currency === req.currency) &&
    (t.pendingId ?? "") === req.pendingId &&
    t.timeoutSeconds === req.timeoutSeconds &&
    sameMetadata(t.metadata, req.metadata)
  );
}

/** POST and PENDING: move or reserve funds between two accounts. */
function applyNew(req: PostingRequest, s: Scratch, now: Date): ItemOutcome {
  const debit = s.account(req.debitAccountId);
  if (!debit) return { result: PostingResult.DEBIT_ACCOUNT_NOT_FOUND };
  const credit = s.account(req.creditAccountId);
  if (!credit) return { result: PostingResult.CREDIT_ACCOUNT_NOT_FOUND };
  if (debit.currency !== req.currency || credit.currency !== req.currency) return { result: PostingResult.CURRENCY_MISMATCH };
  const standing = checkStanding(debit, credit);
  if (standing !== undefined) return { result: standing };
  const amount = req.amount;
  if (debit.debitsPosted + debit.debitsPending + amount > INT64_MAX || credit.creditsPosted + credit.creditsPending + amount > INT64_MAX) {
    return { result: PostingResult.OVERFLOWS_BALANCE };
  }
  if (isLimited(debit) && availableBalance(debit) - amount < -debit.overdraftLimit) {
    return { result: PostingResult.INSUFFICIENT_FUNDS };
  }
  const pending = req.mode === "pending";
  const transfer: TransferRecord = {
    id: req.id,
    debitAccountId: req.debitAccountId,
    creditAccountId: req.creditAccountId,
    amount,
    currency: req.currency,
    mode: req.mode!,
    pendingId: null,
    timeoutSeconds: req.timeoutSeconds,
    state: pending ? "pending" : "posted",
    postedAmount: 0n,
    metadata: req.metadata,
    createdAt: now,
    expiresAt: pending && req.timeoutSeconds > 0n ? new Date(now.getTime() + Number(req.timeoutSeconds) * 1000) : null,
  };
  const d = s.mutableAccount(debit.id);
  const c = s.mutableAccount(credit.id);
  if (pending) {
    d.debitsPending += amount;
    c.creditsPending += amount;
  } else {
    d.debitsPosted += amount;
    c.creditsPosted += amount;
  }
  s.insert(transfer);
  const layer = pending ? "pending" : "posted";
  const event = pending ? "hold" : "post";
  s.entry(d.id, c.id, transfer, "debit", layer, event, amount);
  s.entry(c.id, d.id, transfer, "credit", layer, event, amount);
  return { result: PostingResult.OK, transfer };
}

function checkStanding(debit: AccountState, credit: AccountState): PostingResult | undefined {
  if (debit.status === "closed") return PostingResult.DEBIT_ACCOUNT_CLOSED;
  if (credit.status === "closed") return PostingResult.CREDIT_ACCOUNT_CLOSED;
  if (debit.status === "frozen") return PostingResult.DEBIT_ACCOUNT_FROZEN;
  if (credit.status === "frozen") return PostingResult.CREDIT_ACCOUNT_FROZEN;
  return undefined;
}

/** POST_PENDING and VOID_PENDING: finalize a hold, at most once. */
function applyFinalize(req: PostingRequest, s: Scratch, now: Date): ItemOutcome {
  const pending = s.transfer(req.pendingId);
  if (!pending) return { result: PostingResult.PENDING_TRANSFER_NOT_FOUND };
  if (pending.mode !== "pending") return { result: PostingResult.PENDING_TRANSFER_NOT_PENDING };
  if (pending.state === "pending_posted") return { result: PostingResult.PENDING_TRANSFER_ALREADY_POSTED };
  if (pending.state === "pending_voided") return { result: PostingResult.PENDING_TRANSFER_ALREADY_VOIDED };
  if (pending.state === "pending_expired" || (pending.expiresAt !== null && pending.expiresAt <= now)) {
    return { result: PostingResult.PENDING_TRANSFER_EXPIRED };
  }
  if (
    (req.debitAccountId !== "" && req.debitAccountId !== pending.debitAccountId) ||
    (req.creditAccountId !== "" && req.creditAccountId !== pending.creditAccountId)
  ) {
    return { result: PostingResult.PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS };
  }
  if (req.currency !== "" && req.currency !== pending.currency) return { result: PostingResult.CURRENCY_MISMATCH };
  const held = pending.amount;
  const posting = req.mode === "post_pending";
  if (req.amount > held) return { result: PostingResult.EXCEEDS_PENDING_AMOUNT };
  if (!posting && req.amount !== 0n && req.amount !== held) return { result: PostingResult.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT };
  const amount = req.amount === 0n ? held : req.amount;
  const debit = s.account(pending.debitAccountId)!;
  const credit = s.account(pending.creditAccountId)!;
  if (posting) {
    const standing = checkStanding(debit, credit);
    if (standing !== undefined) return { result: standing };
    if (debit.debitsPosted + amount > INT64_MAX || credit.creditsPosted + amount > INT64_MAX) {
      return { result: PostingResult.OVERFLOWS_BALANCE };
    }
  }
  const transfer: TransferRecord = {
    id: req.id,
    debitAccountId: pending.debitAccountId,
    creditAccountId: pending.creditAccountId,
    amount,
    currency: pending.currency,
    mode: req.mode!,
    pendingId: pending.id,
    timeoutSeconds: 0n,
    state: posting ? "posted" : "voided",
    postedAmount: 0n,
    metadata: req.metadata,
    createdAt: now,
    expiresAt: null,
  };
  const d = s.mutableAccount(debit.id);
  const c = s.mutableAccount(credit.id);
  d.debitsPending -= held;
  c.creditsPending -= held;
  s.entry(d.id, c.id, transfer, "debit", "pending", "release", -held);
  s.entry(c.id, d.id, transfer, "credit", "pending", "release", -held);
  if (posting) {
    d.debitsPosted += amount;
    c.creditsPosted += amount;
    s.entry(d.id, c.id, transfer, "debit", "posted", "post", amount);
    s.entry(c.id, d.id, transfer, "credit", "posted", "post", amount);
  }
  s.insert(transfer);
  s.finalize(pending, posting ? "pending_posted" : "pending_voided", posting ? amount : 0n);
  return { result: PostingResult.OK, transfer };
}

/** Releases expired holds (called by the expiry sweeper under the same row locks). */
export function expireHolds(holds: TransferRecord[], view: LedgerView, now: Date): BatchEffects {
  const effects = noEffects();
  for (const hold of holds) {
    if (hold.state !== "pending" || hold.expiresAt === null || hold.expiresAt > now) continue;
    const s = new Scratch(view);
    const d = s.mutableAccount(hold.debitAccountId);
    const c = s.mutableAccount(hold.creditAccountId);
    d.debitsPending -= hold.amount;
    c.creditsPending -= hold.amount;
    s.entry(d.id, c.id, hold, "debit", "pending", "expire", -hold.amount);
    s.entry(c.id, d.id, hold, "credit", "pending", "expire", -hold.amount);
    s.finalize(hold, "pending_expired", 0n);
    s.commitInto(view, effects);
  }
  return effects;
}
