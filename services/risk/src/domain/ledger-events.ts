import { context, type Context } from "@opentelemetry/api";
import type { LedgerTransfer } from "../../../../gen/tally/account/v1/ledger_pb";
import type { EventEnvelope } from "../../../../gen/tally/events/v1/events_pb";
import { GroupCommit } from "../../../../platform/group-commit";
import { applyOnce, applyOnceEach } from "../../../../platform/inbox/apply-once";
import { inbox } from "../db/schema";
import type { RiskDb } from "../db/types";
import type { Monitoring } from "./monitoring";
import type { Profiles } from "./profiles";

export const LEDGER_EVENTS_CONSUMER = "risk.ledger";

/** A transfers_posted event being handled, in its consumer span's trace. */
interface Postings {
  envelope: EventEnvelope;
  transfers: LedgerTransfer[];
  context: Context;
}

// Postings applied at once: the events handled meanwhile share the next transaction.
const POSTINGS_GROUPS = { concurrency: 1, maxItems: 32, onePerKey: true, name: "ledger events" };

/**
 * Applies the account service's events exactly once: the inbox row, risk's
 * account view, the profile increments and any alerts share one transaction,
 * so a redelivered or replayed event changes nothing. The transfers_posted
 * events handled at the same time share one (group commit): one inbox insert
 * and one statement per profile table for all their transfers; if it fails,
 * each is applied again alone, so one event's failure is never another's.
 */
export function ledgerEventHandler(db: RiskDb, profiles: Profiles, monitoring: Monitoring) {
  const applyPostings = async (events: Postings[]): Promise<void> => {
    await applyOnceEach(db, inbox, LEDGER_EVENTS_CONSUMER, events.map((e) => e.envelope.id), async (tx, fresh) => {
      const applied = events.filter((e) => fresh.includes(e.envelope.id));
      await profiles.recordTransfers(tx, applied.flatMap((e) => e.transfers));
      // Each judged in its own event's trace, so the alerts it raises follow from it.
      for (const e of applied) await context.with(e.context, () => monitoring.evaluate(tx, e.envelope, e.transfers));
    });
  };
  const postings = new GroupCommit<Postings, void>(
    async (groups) => {
      await applyPostings(groups.flat());
      return groups.map((g) => g.map(() => undefined));
    },
    POSTINGS_GROUPS,
    // An event delivered twice at once goes in two groups: the second finds it applied.
    (e) => [e.envelope.id],
  );
  return async (envelope: EventEnvelope): Promise<void> => {
    const payload = envelope.payload;
    if (payload.case === "transfersPosted") {
      await postings.submit([{ envelope, transfers: payload.value.transfers, context: context.active() }]);
      return;
    }
    if (payload.case !== "accountOpened" && payload.case !== "accountStatusChanged") return;
    await applyOnce(db, inbox, LEDGER_EVENTS_CONSUMER, envelope.id, async (tx) => {
      if (payload.value.account) await profiles.recordAccount(tx, payload.value.account);
    });
  };
}
