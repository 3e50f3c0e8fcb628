import { TransferStatus, type Transfer } from "../../../gen/tally/transactions/v1/transfer_pb";
import { newId } from "../../../platform/ids";
import { eventually } from "../../../test/support/events";
import type { TransferRow } from "../src/db/schema";
import type { NewTransfer } from "../src/domain/transfers";
import type { TransactionsHarness } from "./harness";

export { balanceOf, expectRpcError, fund, largestMetadata, openAccount, post, settlement, transfer, withSql } from "../../account/test/fixtures";

export const usd = (amount: bigint) => ({ amount, currency: "USD" });

export const transferRequest = <E extends object = object>(from: string, to: string, amount: bigint, extra?: E) => ({
  requestId: newId(),
  fromAccountId: from,
  toAccountId: to,
  amount: usd(amount),
  ...(extra as E),
});

/** A new transfer of 100 USD between two made-up accounts, waiting for risk, as stored. */
export const newTransferRow = (): NewTransfer & Pick<Required<NewTransfer>, "status" | "step"> => ({
  id: newId(),
  requestId: newId(),
  kind: "transfer",
  status: "created",
  step: "assess",
  fromAccountId: newId(),
  toAccountId: newId(),
  amount: 100n,
  currency: "USD",
});

/** A transfer as stored, for a gate to drive (it is not in the database). */
export const transferRow = (): TransferRow => ({
  ...newTransferRow(),
  capturedAmount: 0n,
  reversedAmount: 0n,
  reversalReserved: 0n,
  reversesTransferId: null,
  holdExpiresAt: null,
  holdSeconds: 0n,
  finalizeLedgerId: null,
  captureAmount: 0n,
  description: "",
  metadata: {},
  risk: null,
  failureReason: "",
  failureMessage: "",
  leaseUntil: null,
  createdAt: new Date(),
  updatedAt: new Date(),
  postedAt: null,
});

/** Waits until the transfer reaches a status (events and recovery move it asynchronously). */
export function statusBecomes(h: TransactionsHarness, transferId: string, status: TransferStatus, timeoutMs = 20_000): Promise<Transfer> {
  return eventually(async () => {
    const { transfer } = await h.transactions.getTransfer({ transferId });
    return transfer!.status === status ? transfer! : undefined;
  }, timeoutMs);
}

/** Counts rows of a table in the transactions schema. */
export async function rowsIn(h: TransactionsHarness, table: string): Promise<number> {
  const postgres = (await import("postgres")).default;
  const sql = postgres(h.db.url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql.unsafe(`select count(*)::int as n from transactions.${table}`);
    return row.n as number;
  } finally {
    await sql.end();
  }
}
