import { sql } from "drizzle-orm";
import type { AccountDb } from "../db/types";

export type BreachKind = "unbalanced_currency" | "balance_mismatch" | "limit_exceeded" | "transfer_applied_twice" | "unbalanced_transfer";

export interface Breach {
  kind: BreachKind;
  subject: string;
  detail: string;
}

/** Decimal strings: sums over all accounts may outgrow a bigint. */
export interface CurrencyTotals {
  currency: string;
  debitsPosted: string;
  creditsPosted: string;
  debitsPending: string;
  creditsPending: string;
}

export interface Reconciliation {
  breaches: Breach[];
  totals: CurrencyTotals[];
  accountsChecked: bigint;
  entriesChecked: bigint;
  transfersChecked: bigint;
}

/**
 * Checks the ledger's invariants over everything stored, in one snapshot
 * (REPEATABLE READ): Σ debits = Σ credits per currency; every balance equals
 * the sum of its entries; no customer beyond its limit; no transfer applied twice.
 */
export async function reconcile(db: AccountDb): Promise<Reconciliation> {
  return db.transaction(
    async (tx) => {
      const totals = (await tx.execute(sql`
        select currency, sum(debits_posted)::text as "debitsPosted", sum(credits_posted)::text as "creditsPosted",
               sum(debits_pending)::text as "debitsPending", sum(credits_pending)::text as "creditsPending",
               count(*)::bigint as accounts
        from account.accounts group by currency order by currency`)) as unknown as (CurrencyTotals & { accounts: bigint })[];
      const breaches: Breach[] = [];
      for (const t of totals) {
        if (t.debitsPosted !== t.creditsPosted || t.debitsPending !== t.creditsPending) {
          breaches.push({
            kind: "unbalanced_currency",
            subject: t.currency,
            detail: `posted debits ${t.debitsPosted} vs credits ${t.creditsPosted}; pending debits ${t.debitsPending} vs credits ${t.creditsPending}`,
          });
        }
      }
      const mismatches = (await tx.execute(sql`
        with sums as (
          select account_id,
            coalesce(sum(amount) filter (where direction = 'debit' and layer = 'posted'), 0) as dp,
            coalesce(sum(amount) filter (where direction = 'credit' and layer = 'posted'), 0) as cp,
            coalesce(sum(amount) filter (where direction = 'debit' and layer = 'pending'), 0) as dpe,
            coalesce(sum(amount) filter (where direction = 'credit' and layer = 'pending'), 0) as cpe
          from account.entries group by account_id)
        select a.id, a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending,
               coalesce(s.dp, 0)::text as dp, coalesce(s.cp, 0)::text as cp, coalesce(s.dpe, 0)::text as dpe, coalesce(s.cpe, 0)::text as cpe
        from account.accounts a left join sums s on s.account_id = a.id
        where a.debits_posted <> coalesce(s.dp, 0) or a.credits_posted <> coalesce(s.cp, 0)
           or a.debits_pending <> coalesce(s.dpe, 0) or a.credits_pending <> coalesce(s.cpe, 0)`)) as unknown as Record<string, string | bigint>[];
      for (const m of mismatches) {
        breaches.push({
          kind: "balance_mismatch",
          subject: String(m.id),
          detail: `balances (dp ${m.debits_posted}, cp ${m.credits_posted}, dpe ${m.debits_pending}, cpe ${m.credits_pending}) vs entries (${m.dp}, ${m.cp}, ${m.dpe}, ${m.cpe})`,
        });
      }
      // Pending balances are exactly the holds still open.
      const holds = (await tx.execute(sql`
        with open as (
          select debit_account_id as account_id, amount as debit, 0::bigint as credit from account.ledger_transfers where state = 'pending'
          union all
          select credit_account_id, 0, amount from account.ledger_transfers where state = 'pending'),
        sums as (select account_id, sum(debit) as debit, sum(credit) as credit from open group by account_id)
        select a.id, a.debits_pending, a.credits_pending, coalesce(s.debit, 0)::text as held_debit, coalesce(s.credit, 0)::text as held_credit
        from account.accounts a left join sums s on s.account_id = a.id
        where a.debits_pending <> coalesce(s.debit, 0) or a.credits_pending <> coalesce(s.credit, 0)`)) as unknown as Record<string, string | bigint>[];
      for (const m of holds) {
        breaches.push({
          kind: "balance_mismatch",
          subject: String(m.id),
          detail: `pending (dpe ${m.debits_pending}, cpe ${m.credits_pending}) vs open holds (${m.held_debit}, ${m.held_credit})`,
        });
      }
      const overLimit = (await tx.execute(sql`
        select id, credits_posted - debits_posted - debits_pending as available, overdraft_limit
        from account.accounts where kind = 'customer' and credits_posted - debits_posted - debits_pending < -overdraft_limit`)) as unknown as Record<string, string | bigint>[];
      for (const o of overLimit) {
        breaches.push({ kind: "limit_exceeded", subject: String(o.id), detail: `available ${o.available} below -${o.overdraft_limit}` });
      }
      // Each (transfer, layer, event) is one debit and one credit of the same amount.
      const transfers = (await tx.execute(sql`
        select transfer_id, layer, event, count(*)::bigint as n,
               coalesce(sum(amount) filter (where direction = 'debit'), 0)::text as debits,
               coalesce(sum(amount) filter (where direction = 'credit'), 0)::text as credits
        from account.entries group by transfer_id, layer, event
        having count(*) <> 2 or count(*) filter (where direction = 'debit') <> 1
            or coalesce(sum(amount) filter (where direction = 'debit'), 0) <> coalesce(sum(amount) filter (where direction = 'credit'), 0)`)) as unknown as Record<string, string | bigint>[];
      for (const t of transfers) {
        breaches.push({
          kind: BigInt(t.n) > 2n ? "transfer_applied_twice" : "unbalanced_transfer",
          subject: String(t.transfer_id),
          detail: `${t.layer}/${t.event}: ${t.n} entries, debits ${t.debits}, credits ${t.credits}`,
        });
      }
      const [counts] = (await tx.execute(sql`
        select (select count(*) from account.accounts)::bigint as accounts,
               (select count(*) from account.entries)::bigint as entries,
               (select count(*) from account.ledger_transfers)::bigint as transfers`)) as unknown as { accounts: bigint; entries: bigint; transfers: bigint }[];
      return {
        breaches,
        totals: totals.map(({ accounts: _n, ...t }) => t),
        accountsChecked: counts.accounts,
        entriesChecked: counts.entries,
        transfersChecked: counts.transfers,
      };
    },
    { isolationLevel: "repeatable read", accessMode: "read only" },
  );
}
