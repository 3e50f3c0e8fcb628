import { fromBinary, toJsonString } from "@bufbuild/protobuf";
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { EventEnvelopeSchema } from "../gen/tally/events/v1/events_pb";

export interface TailOptions {
  natsUrl: string;
  stream: string;
  /** Subjects to follow, e.g. "tally.transactions.>"; every event by default. */
  subject?: string;
  /** From the first event the stream holds, instead of from now. */
  fromStart: boolean;
  /** Stop after this many events. */
  limit?: number;
  write: (line: string) => void;
}

/**
 * Follows the event stream straight from JetStream (operators reach NATS; the
 * gateway does not serve events), one JSON line per event, through an
 * ordered consumer that leaves nothing behind on the server.
 */
export async function tailEvents(options: TailOptions): Promise<void> {
  const nc = await connect({ servers: options.natsUrl.split(","), name: "tally-cli" });
  try {
    const consumer = await jetstream(nc).consumers.get(options.stream, {
      ...(options.subject ? { filter_subjects: options.subject } : {}),
      deliver_policy: options.fromStart ? DeliverPolicy.All : DeliverPolicy.New,
    });
    const messages = await consumer.consume();
    const stop = () => messages.stop();
    process.once("SIGINT", stop);
    let seen = 0;
    for await (const message of messages) {
      const envelope = fromBinary(EventEnvelopeSchema, message.data);
      options.write(`${JSON.stringify({ seq: message.seq, subject: message.subject, event: JSON.parse(toJsonString(EventEnvelopeSchema, envelope)) })}\n`);
      if (options.limit !== undefined && ++seen >= options.limit) break;
    }
    process.off("SIGINT", stop);
  } finally {
    await nc.close();
  }
}
