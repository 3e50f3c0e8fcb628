import { context, type Context } from "@opentelemetry/api";
import type { Account } from "../../../../gen/tally/account/v1/account_pb";
import type { LedgerTransfer } from "../../../../gen/tally/account/v1/ledger_pb";
import type { EventEnvelope } from "../../../../gen/tally/events/v1/events_pb";
import { GroupCommit } from "../../../../platform/group-commit";
import { applyOnceEach } from "../../../../platform/inbox/apply-once";
import { inbox } from "../db/schema";
import type { RiskDb } from "../db/types";
import type { Monitoring } from "./monitoring";
import type { Profiles } from "./profiles";

export const LEDGER_EVENTS_CONSUMER = "risk.ledger";

/** A ledger event being handled, what it tells risk, and its consumer span's trace. */
interface LedgerEvent {
  envelope: EventEnvelope;
  account?: Account;
  transfers: LedgerTransfer[];
  context: Context;
}

/** What an event tells risk, or undefined for an event risk has no use for. */
function learnt(envelope: EventEnvelope): Omit<LedgerEvent, "envelope" | "context"> | undefined {
  const { payload } = envelope;
  switch (payload.case) {
    case "transfersPosted":
      return { transfers: payload.value.transfers };
    case "accountOpened":
    case "accountStatusChanged":
      return { account: payload.value.account, transfers: [] };
    default:
      return undefined;
  }
}

/**
 * Applies the account service's events exactly once: the inbox rows, risk's
 * account view, the profile increments and any alerts share one transaction,
 * so a redelivered or replayed event changes nothing. Events are applied in
 * groups (group commit): the events handled meanwhile share one transaction,
 * one inbox insert and one statement per table, however many there are. A
 * transfers_posted event waits up to `gatherMs` for others (or until the group
 * holds `maxEvents`, all the consumer hands out at once): no transfer waits on
 * what risk learns from it, so a few milliseconds buy fewer, larger
 * transactions. Account events do not wait, since assessments read the views
 * they write. If a group fails, each event is applied again alone, so one
 * event's failure is never another's.
 */
export function ledgerEventHandler(db: RiskDb, profiles: Profiles, monitoring: Monitoring, grouping: { gatherMs: number; maxEvents: number }) {
  const apply = async (events: LedgerEvent[]): Promise<void> => {
    await applyOnceEach(db, inbox, LEDGER_EVENTS_CONSUMER, events.map((e) => e.envelope.id), async (tx, fresh) => {
      const freshIds = new Set(fresh);
      const applied = events.filter((e) => freshIds.has(e.envelope.id));
      await profiles.recordAccounts(tx, applied.flatMap((e) => (e.account ? [e.account] : [])));
      await profiles.recordTransfers(tx, applied.flatMap((e) => e.transfers));
      // Each judged in its own event's trace, so the alerts it raises follow from it.
      for (const e of applied) if (e.transfers.length > 0) await context.with(e.context, () => monitoring.evaluate(tx, e.envelope, e.transfers));
    });
  };
  const groups = (gatherMs: number) =>
    new GroupCommit<LedgerEvent, void>(
      async (requests) => {
        await apply(requests.flat());
        return requests.map((r) => r.map(() => undefined));
      },
      // A group starts once it holds every event the consumer may hold: no more can come before some are acked.
      { concurrency: 1, maxItems: grouping.maxEvents, onePerKey: true, gatherMs },
      // An event delivered twice at once goes in two groups: the second finds it applied.
      (e) => [e.envelope.id],
    );
  // Assessments read the account views: those events are applied at once (together if they come together).
  const accountEvents = groups(0);
  const postings = groups(grouping.gatherMs);
  return async (envelope: EventEnvelope): Promise<void> => {
    const what = learnt(envelope);
    if (!what) return;
    const group = envelope.payload.case === "transfersPosted" ? postings : accountEvents;
    await group.submit([{ envelope, ...what, context: context.active() }]);
  };
}
