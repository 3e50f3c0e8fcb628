import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { context, propagation, type Context } from "@opentelemetry/api";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { EventEnvelopeSchema, type EventEnvelope } from "../../gen/tally/events/v1/events_pb";
import { insertRows } from "../db/recordset";
import { newId } from "../ids";
import { eventSubject } from "../nats/subjects";
import type { OutboxTable } from "./table";

/** The oneof payload of an envelope, e.g. { case: "accountOpened", value: {...} }. */
export type EventPayload = Exclude<EventEnvelope["payload"], { case: undefined }>;

export interface NewEvent {
  subjectId: string;
  payload: EventPayload;
  /** The trace the event continues; by default the active one. (Writes committed together may carry several traces.) */
  context?: Context;
}

// "accountOpened" -> "account_opened"
const snakeCase = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

export function buildEnvelope(source: string, event: NewEvent, occurredAt = new Date()): EventEnvelope {
  return create(EventEnvelopeSchema, {
    id: newId(),
    type: snakeCase(event.payload.case),
    occurredAt: timestampFromDate(occurredAt),
    source,
    subjectId: event.subjectId,
    payload: event.payload,
  });
}

export interface OutboxWriter {
  table: OutboxTable;
  source: string;
  subjectPrefix: string;
}

/** Writes events into the outbox inside the caller's transaction; returns their envelopes. */
export async function appendEvents(
  tx: PgDatabase<PgQueryResultHKT, Record<string, unknown>>,
  writer: OutboxWriter,
  events: NewEvent[],
): Promise<EventEnvelope[]> {
  if (events.length === 0) return [];
  const traceHeaders = (traceContext: Context) => {
    const headers: Record<string, string> = {};
    propagation.inject(traceContext, headers);
    return headers;
  };
  const active = traceHeaders(context.active());
  const envelopes = events.map((e) => buildEnvelope(writer.source, e));
  await insertRows(
    tx,
    writer.table,
    envelopes.map((envelope, i) => ({
      id: envelope.id,
      subject: eventSubject(writer.subjectPrefix, writer.source, envelope.type),
      payload: toBinary(EventEnvelopeSchema, envelope),
      headers: events[i].context ? traceHeaders(events[i].context!) : active,
    })),
  );
  return envelopes;
}
