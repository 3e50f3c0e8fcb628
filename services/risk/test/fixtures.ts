import type { MessageInitShape } from "@bufbuild/protobuf";
import { TransferKind, type TransferSchema } from "../../../gen/tally/transactions/v1/transfer_pb";
import { newId } from "../../../platform/ids";
import { eventually } from "../../../test/support/events";
import type { RiskHarness } from "./harness";

export { balanceOf, expectRpcError, fund, openAccount, post, settlement, transfer, withSql } from "../../account/test/fixtures";

/** A transfer as transactions would send it for assessment. */
export const transferToAssess = (from: string, to: string, amount: bigint, extra: Omit<MessageInitShape<typeof TransferSchema>, "$typeName"> = {}) => ({
  id: newId(),
  kind: TransferKind.TRANSFER,
  fromAccountId: from,
  toAccountId: to,
  amount: { amount, currency: "USD" },
  ...extra,
});

/** Waits until risk's profile of an account satisfies a check (events arrive asynchronously). */
export function profileWhen(h: RiskHarness, accountId: string, check: (p: Awaited<ReturnType<RiskHarness["risk"]["getRiskProfile"]>>["profile"]) => boolean) {
  return eventually(async () => {
    const { profile } = await h.risk.getRiskProfile({ accountId });
    return check(profile) ? profile! : undefined;
  }, 20_000);
}

/** Counts rows of a table in the risk schema. */
export async function riskRows(h: RiskHarness, table: string): Promise<number> {
  const postgres = (await import("postgres")).default;
  const sql = postgres(h.db.url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql.unsafe(`select count(*)::int as n from risk.${table}`);
    return row.n as number;
  } finally {
    await sql.end();
  }
}
