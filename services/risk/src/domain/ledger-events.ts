import type { EventEnvelope } from "../../../../gen/tally/events/v1/events_pb";
import { applyOnce } from "../../../../platform/inbox/apply-once";
import { inbox } from "../db/schema";
import type { RiskDb } from "../db/types";
import type { Monitoring } from "./monitoring";
import type { Profiles } from "./profiles";

export const LEDGER_EVENTS_CONSUMER = "risk.ledger";

/**
 * Applies one of the account service's events exactly once: the inbox row,
 * risk's account view, the profile increments and any alerts share one
 * transaction, so a redelivered or replayed event changes nothing.
 */
export function ledgerEventHandler(db: RiskDb, profiles: Profiles, monitoring: Monitoring) {
  return async (envelope: EventEnvelope): Promise<void> => {
    const payload = envelope.payload;
    if (payload.case !== "accountOpened" && payload.case !== "accountStatusChanged" && payload.case !== "transfersPosted") return;
    await applyOnce(db, inbox, LEDGER_EVENTS_CONSUMER, envelope.id, async (tx) => {
      if (payload.case === "transfersPosted") {
        await profiles.recordTransfers(tx, payload.value.transfers);
        await monitoring.evaluate(tx, envelope, payload.value.transfers);
      } else if (payload.value.account) {
        await profiles.recordAccount(tx, payload.value.account);
      }
    });
  };
}
