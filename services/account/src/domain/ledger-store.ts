import { create } from "@bufbuild/protobuf";
import { inArray, sql } from "drizzle-orm";
import { TransfersPostedSchema } from "../../../../gen/tally/events/v1/events_pb";
import { inLockOrder } from "../../../../platform/db/lock-order";
import { pipelined } from "../../../../platform/db/pipeline";
import { insertRows, recordset } from "../../../../platform/db/recordset";
import { appendEvents, type OutboxWriter } from "../../../../platform/outbox/append";
import { accounts, entries, ledgerRefusals, ledgerTransfers } from "../db/schema";
import type { AccountTx } from "../db/types";
import { balanceMessage, transferMessage } from "../proto";
import type { AccountState, TransferRecord } from "./model";
import type { BatchEffects, PostingResult } from "./posting";

/** Reading and writing the ledger's rows for a batch, inside the caller's transaction. */

/** Locks the accounts in id order (so concurrent batches never deadlock) and returns them. */
export async function lockAccounts(tx: AccountTx, ids: string[]): Promise<Map<string, AccountState>> {
  const rows = ids.length === 0 ? [] : await tx
    .select({
      id: accounts.id,
      currency: accounts.currency,
      kind: accounts.kind,
      status: accounts.status,
      overdraftLimit: accounts.overdraftLimit,
      debitsPosted: accounts.debitsPosted,
      creditsPosted: accounts.creditsPosted,
      debitsPending: accounts.debitsPending,
      creditsPending: accounts.creditsPending,
      version: accounts.version,
    })
    .from(accounts)
    .where(inArray(accounts.id, ids))
    .orderBy(accounts.id)
    .for("update");
  return new Map(rows.map((r) => [r.id, r]));
}

export async function loadTransfers(tx: AccountTx, ids: string[]): Promise<Map<string, TransferRecord>> {
  const rows = ids.length === 0 ? [] : await tx.select().from(ledgerTransfers).where(inArray(ledgerTransfers.id, ids));
  return new Map(rows.map((r) => [r.id, r]));
}

/** Which of these ids the ledger refused before, and with what. */
export async function loadRefusals(tx: AccountTx, ids: string[]): Promise<Map<string, PostingResult>> {
  const rows = ids.length === 0 ? [] : await tx.select({ id: ledgerRefusals.id, result: ledgerRefusals.result }).from(ledgerRefusals).where(inArray(ledgerRefusals.id, ids));
  return new Map(rows.map((r) => [r.id, r.result as PostingResult]));
}

/** Writes a batch's effects and its event; the statements are pipelined on the transaction's connection. */
export async function writeEffects(tx: AccountTx, effects: BatchEffects, outbox: OutboxWriter): Promise<void> {
  // Each started as it is pushed (drizzle's statements run when awaited): sent in this order.
  const writes: Promise<unknown>[] = [];
  // Two replicas may refuse one id at once where there was nothing to lock (its accounts unknown): either stands.
  if (effects.refused.length > 0) writes.push(insertRows(tx, ledgerRefusals, inLockOrder(effects.refused, (r) => r.id), { onConflict: sql`(id) do nothing` }));
  if (effects.inserted.length === 0 && effects.finalized.length === 0) {
    await pipelined(writes);
    return;
  }
  // Two batches inserting the same new ids wait on each other.
  const byId = inLockOrder(effects.inserted, (t) => t.id);
  if (byId.length > 0) writes.push(insertRows(tx, ledgerTransfers, byId));
  if (effects.finalized.length > 0) {
    const v = recordset({ id: ledgerTransfers.id, state: ledgerTransfers.state, posted_amount: ledgerTransfers.postedAmount }, effects.finalized.map((t) => ({ id: t.id, state: t.state, posted_amount: t.postedAmount })), "v");
    writes.push(Promise.resolve(tx.execute(sql`update ${ledgerTransfers} as t set state = v.state, posted_amount = v.posted_amount from ${v} where t.id = v.id`)));
  }
  if (effects.entries.length > 0) writes.push(insertRows(tx, entries, effects.entries));
  const changed = [...effects.accounts.values()];
  const balances = recordset(
    { id: accounts.id, dp: accounts.debitsPosted, cp: accounts.creditsPosted, dpe: accounts.debitsPending, cpe: accounts.creditsPending, version: accounts.version },
    changed.map((a) => ({ id: a.id, dp: a.debitsPosted, cp: a.creditsPosted, dpe: a.debitsPending, cpe: a.creditsPending, version: a.version })),
    "v",
  );
  writes.push(
    Promise.resolve(
      tx.execute(sql`
        update ${accounts} as a set debits_posted = v.dp, credits_posted = v.cp, debits_pending = v.dpe,
          credits_pending = v.cpe, version = v.version, updated_at = now()
        from ${balances} where a.id = v.id`),
    ),
  );
  const events = eventChunks([...effects.inserted, ...effects.finalized]).map((transfers) => {
    const touched = new Set(transfers.flatMap((t) => [t.debitAccountId, t.creditAccountId]));
    return {
      subjectId: transfers[0].id,
      payload: {
        case: "transfersPosted" as const,
        value: create(TransfersPostedSchema, {
          transfers: transfers.map(transferMessage),
          balances: changed.filter((a) => touched.has(a.id)).map(balanceMessage),
        }),
      },
    };
  });
  writes.push(appendEvents(tx, outbox, events));
  // The first to fail is the cause: a race on a new id, retried.
  await pipelined(writes);
}

// Well under NATS's default 1 MiB message limit, whatever metadata the transfers carry.
const EVENT_BUDGET_BYTES = 256 * 1024;
const TRANSFER_BASE_BYTES = 300;

/** A batch's transfers, split so that each transfers_posted event stays small enough to publish. */
function eventChunks(transfers: TransferRecord[]): TransferRecord[][] {
  const chunks: TransferRecord[][] = [];
  let current: TransferRecord[] = [];
  let size = 0;
  for (const t of transfers) {
    const bytes = TRANSFER_BASE_BYTES + Object.entries(t.metadata).reduce((n, [k, v]) => n + k.length + v.length + 8, 0);
    if (current.length > 0 && size + bytes > EVENT_BUDGET_BYTES) {
      chunks.push(current);
      current = [];
      size = 0;
    }
    current.push(t);
    size += bytes;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}
