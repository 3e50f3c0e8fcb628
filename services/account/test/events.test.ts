import { AccountStatus } from "../../../gen/tally/account/v1/account_pb";
import { LedgerTransferState, PostingMode, PostingResult } from "../../../gen/tally/account/v1/ledger_pb";
import { eventually, readEvents, type StoredEvent } from "../../../test/support/events";
import { fund, openAccount, post, transfer, withSql } from "./fixtures";
import { startAccountHarness, type AccountHarness } from "./harness";

let h: AccountHarness;
beforeAll(async () => {
  h = await startAccountHarness({ HOLD_EXPIRY_INTERVAL_MS: "100" });
});
afterAll(() => h.stop());

const unpublished = () => withSql(h, async (sql) => (await sql`select count(*)::int as n from account.outbox where published_at is null`)[0].n as number);

/** Waits for the relay to empty the outbox, then reads the stream. */
async function published(): Promise<StoredEvent[]> {
  await eventually(async () => (await unpublished()) === 0);
  return readEvents(h.stream.name);
}

const about = (events: StoredEvent[], type: string, subjectId: string) =>
  events.filter((e) => e.envelope.type === type && e.envelope.subjectId === subjectId);

it("publishes each account opening and status change once, on its subject, with the event id as Nats-Msg-Id", async () => {
  const a = await openAccount(h);
  await h.accounts.freezeAccount({ accountId: a.id, reason: "check" });
  await h.accounts.freezeAccount({ accountId: a.id, reason: "again: no change, no event" });
  const events = await published();
  const opened = about(events, "account_opened", a.id);
  expect(opened).toHaveLength(1);
  expect(opened[0].subject).toBe(`${h.stream.subjectPrefix}.account.account_opened`);
  expect(opened[0].msgId).toBe(opened[0].envelope.id);
  expect(opened[0].envelope.source).toBe("account");
  expect(opened[0].envelope.payload.case === "accountOpened" && opened[0].envelope.payload.value.account?.id).toBe(a.id);
  const changed = about(events, "account_status_changed", a.id);
  expect(changed).toHaveLength(1);
  const payload = changed[0].envelope.payload;
  expect(payload.case === "accountStatusChanged" && [payload.value.previousStatus, payload.value.account?.status]).toEqual([AccountStatus.ACTIVE, AccountStatus.FROZEN]);
});

it("publishes one transfers_posted event per committed batch, none for a replay, and one when a hold expires", async () => {
  const a = await openAccount(h);
  const b = await openAccount(h);
  await fund(h, a.id, 1_000n);
  const t1 = transfer(a.id, b.id, 10n);
  const t2 = transfer(a.id, b.id, 20n);
  await post(h, t1, t2);
  await post(h, t1, t2); // EXISTS twice: nothing new to say
  const hold = transfer(a.id, b.id, 30n, { mode: PostingMode.PENDING, timeoutSeconds: 1n });
  await post(h, hold);
  await eventually(async () => about(await published(), "transfers_posted", hold.id!).length > 0 && (await h.ledger.lookupTransfers({ transferIds: [hold.id!] })).transfers[0].state === LedgerTransferState.PENDING_EXPIRED, 15_000);

  const events = await published();
  const batch = about(events, "transfers_posted", t1.id!);
  expect(batch).toHaveLength(1);
  const value = batch[0].envelope.payload.case === "transfersPosted" ? batch[0].envelope.payload.value : undefined;
  expect(value?.transfers.map((t) => t.id)).toEqual([t1.id, t2.id]);
  expect(value?.balances.find((x) => x.accountId === b.id)?.posted).toBe(30n);
  const mentions = events.filter((e) => e.envelope.payload.case === "transfersPosted" && e.envelope.payload.value.transfers.some((t) => t.id === t1.id));
  expect(mentions).toHaveLength(1);

  await eventually(async () => {
    const all = await published();
    return all.some((e) => e.envelope.payload.case === "transfersPosted" && e.envelope.payload.value.transfers.some((t) => t.id === hold.id && t.state === LedgerTransferState.PENDING_EXPIRED));
  });
});

it("drops an event published again after a crash between publish and mark (Nats-Msg-Id duplicate)", async () => {
  await openAccount(h);
  const before = await published();
  const duplicatesBefore = h.service.relay.duplicates;
  // As if the relay died after publishing but before marking: the rows come back as unsent.
  const reset = await withSql(h, (sql) => sql`update account.outbox set published_at = null where seq in (select seq from account.outbox order by seq desc limit 5) returning id`);
  expect(reset).toHaveLength(5);
  h.service.relay.nudge();
  const after = await published();
  expect(after).toHaveLength(before.length);
  expect(new Set(after.map((e) => e.envelope.id)).size).toBe(after.length);
  expect(h.service.relay.duplicates - duplicatesBefore).toBe(5);
});

it("splits a large batch's event so every message stays within the broker's limit", async () => {
  const a = await openAccount(h);
  const b = await openAccount(h);
  await fund(h, a.id, 1_000_000n);
  // The most metadata a transfer may carry: ~18 KB each, ~3.7 MB for the batch.
  const metadata = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`${i}`.padStart(64, "k"), "v".repeat(512)]));
  const batch = Array.from({ length: 200 }, () => transfer(a.id, b.id, 1n, { metadata }));
  const results = await post(h, ...batch);
  expect(results.every((r) => r.result === PostingResult.OK)).toBe(true);
  const events = (await published()).filter(
    (e) => e.envelope.payload.case === "transfersPosted" && e.envelope.payload.value.transfers.some((t) => t.creditAccountId === b.id && t.metadata["0".padStart(64, "k")]),
  );
  expect(events.length).toBeGreaterThan(1);
  const ids = events.flatMap((e) => (e.envelope.payload.case === "transfersPosted" ? e.envelope.payload.value.transfers.map((t) => t.id) : []));
  expect(ids.sort()).toEqual(batch.map((t) => t.id).sort());
}, 60_000);
