import type { AccountRow, EntryRow, LedgerTransferRow } from "../db/schema";

/** An account's balances and standing as the ledger needs them to post. */
export type AccountState = Pick<
  AccountRow,
  | "id"
  | "currency"
  | "kind"
  | "status"
  | "overdraftLimit"
  | "debitsPosted"
  | "creditsPosted"
  | "debitsPending"
  | "creditsPending"
  | "version"
>;

export type TransferRecord = LedgerTransferRow;
export type PostingModeName = TransferRecord["mode"];
export type NewEntry = Omit<EntryRow, "sequence" | "createdAt">;

/** credits − debits, posted only. */
export const postedBalance = (a: AccountState): bigint => a.creditsPosted - a.debitsPosted;

/** What the owner can spend: posted balance less the holds on it. */
export const availableBalance = (a: AccountState): bigint => a.creditsPosted - a.debitsPosted - a.debitsPending;

/** Customer accounts may not go below −overdraft_limit; system accounts may. */
export const isLimited = (a: AccountState): boolean => a.kind === "customer";
