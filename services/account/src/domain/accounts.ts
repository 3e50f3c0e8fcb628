import { create } from "@bufbuild/protobuf";
import { and, asc, desc, eq, gt, inArray, lt, sql } from "drizzle-orm";
import { AccountOpenedSchema, AccountStatusChangedSchema } from "../../../../gen/tally/events/v1/events_pb";
import { isId, newId, normalizeId } from "../../../../platform/ids";
import { CURRENCIES } from "../../../../platform/money";
import { DomainError, ErrorReason } from "../../../../platform/errors";
import { appendEvents, type OutboxWriter } from "../../../../platform/outbox/append";
import { cursorId, cursorSequence, decodePageToken, pageOf, pageSize, type Page } from "../../../../platform/paging";
import { accounts, entries, type AccountRow, type EntryRow } from "../db/schema";
import type { AccountDb } from "../db/types";

/** Account ids one lookup may name. */
export const MAX_LOOKUP = 1000;
import { callerRequestKey } from "../../../../platform/caller";
import { accountMessage, statusOf } from "../proto";
import { requireCurrency, requireId, requireMetadata, requireText, requireToken, sameMetadata } from "../../../../platform/validation";

export interface NewAccount {
  requestId: string;
  customerId: string;
  currency: string;
  overdraftLimit: bigint;
  metadata: Record<string, string>;
  accountId: string;
}

type Status = AccountRow["status"];

/** Opening, reading and changing the standing of accounts. Balances change only through the Ledger. */
export class Accounts {
  /** The hottest read (GetAccount, GetBalance, and every check of an account), built once rather than on every call. */
  private readonly byId;

  constructor(
    private readonly db: AccountDb,
    private readonly outbox: OutboxWriter,
    private readonly afterCommit: () => void = () => {},
  ) {
    this.byId = db.select().from(accounts).where(eq(accounts.id, sql.placeholder("id"))).prepare("account_by_id");
  }

  /** Idempotent by request id, each caller's own (callerOf): a replay returns the account the first call opened. */
  async create(input: NewAccount, caller = ""): Promise<AccountRow> {
    // Stored as the caller's own: two callers' ids never meet.
    const requestId = callerRequestKey(caller, requireToken(input.requestId, "request_id", 128));
    const customerId = requireToken(input.customerId, "customer_id", 64);
    const currency = requireCurrency(input.currency);
    if (input.overdraftLimit < 0n) {
      throw new DomainError(ErrorReason.AMOUNT_OUT_OF_RANGE, "overdraft_limit must not be negative", "overdraft_limit");
    }
    const metadata = requireMetadata(input.metadata);
    const id = input.accountId === "" ? newId() : requireId(input.accountId, "account_id");
    const clientChosen = input.accountId === "" ? undefined : id;
    const created = await this.db.transaction(async (tx) => {
      const [row] = await tx
        .insert(accounts)
        .values({ id, customerId, currency, kind: "customer", overdraftLimit: input.overdraftLimit, metadata, requestId })
        .onConflictDoNothing()
        .returning();
      if (row) await appendEvents(tx, this.outbox, [{ subjectId: row.id, payload: { case: "accountOpened", value: create(AccountOpenedSchema, { account: accountMessage(row) }) } }]);
      return row;
    });
    if (created) {
      this.afterCommit();
      return created;
    }
    const [earlier] = await this.db.select().from(accounts).where(eq(accounts.requestId, requestId));
    if (!earlier) {
      throw new DomainError(ErrorReason.EXISTS_WITH_DIFFERENT_FIELDS, `account ${id} already exists`, "account_id");
    }
    const same =
      earlier.customerId === customerId &&
      earlier.currency === currency &&
      earlier.overdraftLimit === input.overdraftLimit &&
      sameMetadata(earlier.metadata, metadata) &&
      (clientChosen === undefined || earlier.id === clientChosen);
    if (!same) {
      throw new DomainError(ErrorReason.IDEMPOTENCY_KEY_REUSED, "request_id was used before for a different account", "request_id");
    }
    return earlier;
  }

  async get(accountId: string): Promise<AccountRow> {
    const id = requireId(accountId, "account_id");
    const [row] = await this.byId.execute({ id });
    if (!row) throw new DomainError(ErrorReason.ACCOUNT_NOT_FOUND, `account ${id} not found`, "account_id");
    return row;
  }

  /** The accounts that exist among `ids` (a malformed id names none). */
  async lookup(ids: string[]): Promise<AccountRow[]> {
    if (ids.length > MAX_LOOKUP) throw new DomainError(ErrorReason.BATCH_TOO_LARGE, `at most ${MAX_LOOKUP} account ids per lookup`, "account_ids");
    const valid = [...new Set(ids.filter(isId).map(normalizeId))];
    if (valid.length === 0) return [];
    return this.db.select().from(accounts).where(inArray(accounts.id, valid));
  }

  /** A customer's accounts in id order: creation order for the UUIDv7 ids Tally assigns. */
  async listByCustomer(customerIdInput: string, size: number, token: string): Promise<Page<AccountRow>> {
    const customerId = requireToken(customerIdInput, "customer_id", 64);
    const limit = pageSize(size);
    const cursor = decodePageToken(token, ["after"]);
    const rows = await this.db
      .select()
      .from(accounts)
      .where(and(eq(accounts.customerId, customerId), cursor ? gt(accounts.id, cursorId(cursor.after)) : undefined))
      .orderBy(asc(accounts.id))
      .limit(limit + 1);
    return pageOf(rows, limit, (last) => ({ after: last.id }));
  }

  freeze(accountId: string, reason: string) {
    return this.changeStatus(accountId, "frozen", reason);
  }

  unfreeze(accountId: string, reason: string) {
    return this.changeStatus(accountId, "active", reason);
  }

  close(accountId: string, reason: string) {
    return this.changeStatus(accountId, "closed", reason);
  }

  /** The statement: newest entry first, each with the balances after it. */
  async listEntries(accountId: string, size: number, token: string, layer?: EntryRow["layer"]): Promise<Page<EntryRow>> {
    const account = await this.get(accountId);
    const limit = pageSize(size);
    const cursor = decodePageToken(token, ["before"]);
    const before = cursor ? cursorSequence(cursor.before) : undefined;
    const rows = await this.db
      .select()
      .from(entries)
      .where(
        and(
          eq(entries.accountId, account.id),
          before !== undefined ? lt(entries.sequence, before) : undefined,
          layer ? eq(entries.layer, layer) : undefined,
        ),
      )
      .orderBy(desc(entries.sequence))
      .limit(limit + 1);
    return pageOf(rows, limit, (last) => ({ before: last.sequence.toString() }));
  }

  async systemAccount(currencyInput: string, kind: "settlement"): Promise<AccountRow> {
    const currency = requireCurrency(currencyInput);
    // kind <> 'customer' spelled out: a prepared statement's generic plan can then use the partial index.
    const [row] = await this.db.select().from(accounts).where(and(eq(accounts.kind, kind), sql`${accounts.kind} <> 'customer'`, eq(accounts.currency, currency)));
    if (!row) throw new DomainError(ErrorReason.ACCOUNT_NOT_FOUND, `no ${kind} account for ${currency}`, "currency");
    return row;
  }

  /** One settlement account per known currency; safe when replicas start together. */
  async ensureSystemAccounts(): Promise<void> {
    await this.db.transaction(async (tx) => {
      const rows = await tx
        .insert(accounts)
        .values(CURRENCIES.map((currency) => ({ id: newId(), customerId: "", currency, kind: "settlement" as const })))
        .onConflictDoNothing()
        .returning();
      await appendEvents(
        tx,
        this.outbox,
        rows.map((row) => ({ subjectId: row.id, payload: { case: "accountOpened", value: create(AccountOpenedSchema, { account: accountMessage(row) }) } })),
      );
    });
    this.afterCommit();
  }

  private async changeStatus(accountId: string, target: Status, reasonInput: string): Promise<AccountRow> {
    const id = requireId(accountId, "account_id");
    const reason = requireText(reasonInput, "reason", 512);
    const changed = await this.db.transaction(async (tx) => {
      const [row] = await tx.select().from(accounts).where(eq(accounts.id, id)).for("update");
      if (!row) throw new DomainError(ErrorReason.ACCOUNT_NOT_FOUND, `account ${id} not found`, "account_id");
      if (row.kind !== "customer") {
        throw new DomainError(ErrorReason.SYSTEM_ACCOUNT_IMMUTABLE, "system accounts cannot be frozen or closed", "account_id");
      }
      // Asking for the standing an account already has changes nothing: retries are safe.
      if (row.status === target) return { row, changed: false };
      if (row.status === "closed") throw new DomainError(ErrorReason.ACCOUNT_CLOSED, `account ${id} is closed`, "account_id");
      if (target === "closed" && (row.debitsPosted !== row.creditsPosted || row.debitsPending !== 0n || row.creditsPending !== 0n)) {
        throw new DomainError(ErrorReason.ACCOUNT_BALANCE_NOT_ZERO, "only an account with zero balance and no open hold can be closed", "account_id");
      }
      const [updated] = await tx
        .update(accounts)
        .set({ status: target, statusReason: reason, version: row.version + 1n, updatedAt: new Date() })
        .where(eq(accounts.id, id))
        .returning();
      await appendEvents(tx, this.outbox, [
        {
          subjectId: id,
          payload: {
            case: "accountStatusChanged",
            value: create(AccountStatusChangedSchema, { account: accountMessage(updated), previousStatus: statusOf(row.status) }),
          },
        },
      ]);
      return { row: updated, changed: true };
    });
    if (changed.changed) this.afterCommit();
    return changed.row;
  }
}
