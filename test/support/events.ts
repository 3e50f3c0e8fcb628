import { fromBinary } from "@bufbuild/protobuf";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { EventEnvelopeSchema, type EventEnvelope } from "../../gen/tally/events/v1/events_pb";
import { TEST_NATS_URL } from "./infra";

export interface StoredEvent {
  sequence: number;
  subject: string;
  msgId: string | undefined;
  envelope: EventEnvelope;
}

/** Every message a stream holds, decoded, in stream order. */
export async function readEvents(stream: string): Promise<StoredEvent[]> {
  const nc = await connect({ servers: TEST_NATS_URL });
  try {
    const jsm = await jetstreamManager(nc);
    const { state } = await jsm.streams.info(stream);
    const events: StoredEvent[] = [];
    for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
      const msg = await jsm.streams.getMessage(stream, { seq });
      if (!msg) continue;
      events.push({
        sequence: seq,
        subject: msg.subject,
        msgId: msg.header?.get("Nats-Msg-Id"),
        envelope: fromBinary(EventEnvelopeSchema, msg.data),
      });
    }
    return events;
  } finally {
    await nc.close();
  }
}

/** Polls until check passes or the time is up. */
export async function eventually<T>(check: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}
