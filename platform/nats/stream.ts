import { DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamManager } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";

export interface StreamOptions {
  name: string;
  subjectPrefix: string;
  duplicateWindowMs: number;
  maxAgeDays: number;
  replicas: number;
}

/**
 * Creates the event stream, or brings an existing one to this configuration
 * (the configuration is the source of truth: replicas, retention, duplicates).
 * Replicas starting together may race to create it: the loser updates instead.
 */
export async function ensureStream(jsm: JetStreamManager, options: StreamOptions): Promise<void> {
  const config = {
    name: options.name,
    subjects: [`${options.subjectPrefix}.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(options.duplicateWindowMs),
    max_age: nanos(options.maxAgeDays * 24 * 3600 * 1000),
    num_replicas: options.replicas,
  };
  for (let attempt = 0; ; attempt++) {
    try {
      await jsm.streams.info(options.name);
      await jsm.streams.update(options.name, config);
      return;
    } catch (err) {
      if (!isStreamNotFound(err)) throw err;
    }
    try {
      await jsm.streams.add(config);
      return;
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

const STREAM_NOT_FOUND = 10059;

const isStreamNotFound = (err: unknown): boolean => err instanceof JetStreamApiError && err.code === STREAM_NOT_FOUND;
