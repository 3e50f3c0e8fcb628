import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { eq, inArray } from "drizzle-orm";
import type { AccountService } from "../../../../gen/tally/account/v1/account_service_pb";
import { LedgerTransferState, type LedgerTransfer } from "../../../../gen/tally/account/v1/ledger_pb";
import { AlertRaisedSchema, type EventEnvelope } from "../../../../gen/tally/events/v1/events_pb";
import { EventFactsSchema } from "../../../../gen/tally/risk/v1/risk_pb";
import { ErrorReason } from "../../../../platform/errors";
import type { ClientOf } from "../../../../platform/grpc/client";
import { RemoteError } from "../../../../platform/grpc/status";
import { newId } from "../../../../platform/ids";
import type { Logger } from "../../../../platform/logger";
import { appendEvents, type OutboxWriter } from "../../../../platform/outbox/append";
import { accounts, alerts, type StoredHit } from "../db/schema";
import type { RiskTx } from "../db/types";
import { alertMessage } from "../proto";
import { accountFacts } from "./facts";
import type { Profiles } from "./profiles";
import type { RuleSet } from "./rule-set";

const STATE: Record<LedgerTransferState, string> = {
  [LedgerTransferState.UNSPECIFIED]: "unspecified",
  [LedgerTransferState.POSTED]: "posted",
  [LedgerTransferState.PENDING]: "pending",
  [LedgerTransferState.PENDING_POSTED]: "pending_posted",
  [LedgerTransferState.PENDING_VOIDED]: "pending_voided",
  [LedgerTransferState.PENDING_EXPIRED]: "pending_expired",
  [LedgerTransferState.VOIDED]: "voided",
};

// Events older than this (a consumer catching up, a replay) raise alerts but freeze nothing.
const FREEZE_HORIZON_MS = 3600_000;

// Refusals that retrying cannot change: the alert stands without the freeze.
const FINAL_REFUSALS = new Set([ErrorReason.SYSTEM_ACCOUNT_IMMUTABLE, ErrorReason.ACCOUNT_CLOSED, ErrorReason.ACCOUNT_NOT_FOUND]);

/**
 * Monitoring rules, evaluated on the ledger's event stream inside the event's
 * inbox transaction: each transfer is judged with its debit account's facts
 * and profile as just updated, as of the transfer's time. A rule raises at most
 * one alert per account per minute; a freezing rule freezes the account through
 * the account service before the transaction commits, so a failed freeze is
 * retried with the event.
 */
export class Monitoring {
  constructor(
    private readonly ruleSet: RuleSet,
    private readonly profiles: Profiles,
    private readonly accountService: Pick<ClientOf<typeof AccountService>, "freezeAccount">,
    private readonly outbox: OutboxWriter,
    private readonly log: Logger,
  ) {}

  async evaluate(tx: RiskTx, envelope: EventEnvelope, transfers: LedgerTransfer[]): Promise<void> {
    if (transfers.length === 0 || (await this.ruleSet.rules("monitoring")).length === 0) return;
    // Judged as of when the transfers happened, so a consumer that lags or replays sees the windows they saw.
    const at = new Date(Math.max(...transfers.map((t) => (t.createdAt ? timestampDate(t.createdAt).getTime() : Date.now()))));
    const late = Date.now() - at.getTime() > FREEZE_HORIZON_MS;
    const debitIds = [...new Set(transfers.map((t) => t.debitAccountId))];
    // The event is recorded already, so one account's profile is the same for all its transfers here: one query for all.
    const [views, profiles] = await Promise.all([tx.select().from(accounts).where(inArray(accounts.id, debitIds)), this.profiles.profiles(debitIds, at, tx, true)]);
    const profileOf = new Map(debitIds.map((id, i) => [id, profiles[i]]));
    for (const transfer of transfers) {
      const accountId = transfer.debitAccountId;
      const event = create(EventFactsSchema, {
        eventId: envelope.id,
        type: envelope.type,
        transferId: transfer.id,
        debitAccountId: accountId,
        creditAccountId: transfer.creditAccountId,
        amount: transfer.amount,
        currency: transfer.currency,
        state: STATE[transfer.state] ?? "unspecified",
        metadata: transfer.metadata,
      });
      const account = accountFacts(accountId, views.find((v) => v.id === accountId), at);
      const hits = await this.ruleSet.evaluate("monitoring", { event, account, profile: profileOf.get(accountId)! });
      // A rule that could not be evaluated raises nothing (it is counted and logged).
      for (const hit of hits) if (!hit.error) await this.raise(tx, envelope, transfer, hit, at, late);
    }
  }

  /** Stores the alert once per rule, account and minute; freezes when the rule says so and the event is recent. */
  private async raise(tx: RiskTx, envelope: EventEnvelope, transfer: LedgerTransfer, hit: StoredHit, at: Date, late: boolean): Promise<void> {
    const freeze = hit.action === "freeze_account";
    const accountId = transfer.debitAccountId;
    const [alert] = await tx
      .insert(alerts)
      .values({
        id: newId(),
        ruleId: hit.ruleId,
        ruleVersion: hit.ruleVersion,
        accountId,
        severity: freeze ? "high" : "medium",
        message: `${hit.ruleName}: transfer ${transfer.id}${freeze && late ? " (too old to freeze the account for)" : ""}`,
        eventId: envelope.id,
        transferId: transfer.id,
        minute: new Date(Math.floor(at.getTime() / 60_000) * 60_000),
      })
      .onConflictDoNothing()
      .returning();
    if (!alert) return; // raised already this minute, or when this event was first delivered
    let raised = alert;
    if (freeze && !late && (await this.freeze(accountId, hit.ruleName))) {
      [raised] = await tx.update(alerts).set({ accountFrozen: true }).where(eq(alerts.id, alert.id)).returning();
    }
    await appendEvents(tx, this.outbox, [
      { subjectId: accountId, payload: { case: "alertRaised", value: create(AlertRaisedSchema, { alert: alertMessage(raised) }) } },
    ]);
  }

  /** Freezes through the account service (idempotent there); a lost connection throws, to retry the event. */
  private async freeze(accountId: string, ruleName: string): Promise<boolean> {
    try {
      await this.accountService.freezeAccount({ accountId, reason: `risk rule: ${ruleName}` });
      return true;
    } catch (err) {
      if (err instanceof RemoteError && FINAL_REFUSALS.has(err.reason)) {
        this.log.warn({ accountId, reason: err.reasonName }, "account not frozen");
        return false;
      }
      throw err;
    }
  }
}
