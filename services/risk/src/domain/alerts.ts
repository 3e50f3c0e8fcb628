import { and, desc, eq, lt } from "drizzle-orm";
import type { Alert } from "../../../../gen/tally/risk/v1/risk_pb";
import { cursorId, decodePageToken, pageOf, pageSize } from "../../../../platform/paging";
import { requireId } from "../../../../platform/validation";
import { alerts } from "../db/schema";
import type { RiskDb } from "../db/types";
import { alertMessage } from "../proto";

/** Alerts raised by monitoring rules, newest first. */
export class Alerts {
  constructor(private readonly db: RiskDb) {}

  async list(accountId: string, size: number, token: string): Promise<{ items: Alert[]; nextPageToken: string }> {
    const limit = pageSize(size);
    const cursor = decodePageToken(token, ["before"]);
    const rows = await this.db
      .select()
      .from(alerts)
      .where(
        and(
          accountId ? eq(alerts.accountId, requireId(accountId, "account_id")) : undefined,
          cursor ? lt(alerts.id, cursorId(cursor.before)) : undefined,
        ),
      )
      .orderBy(desc(alerts.id))
      .limit(limit + 1);
    const page = pageOf(rows, limit, (last) => ({ before: last.id }));
    return { items: page.items.map(alertMessage), nextPageToken: page.nextPageToken };
  }
}
