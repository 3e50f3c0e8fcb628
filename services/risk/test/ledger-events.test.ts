import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { AccountStatus } from "../../../gen/tally/account/v1/account_pb";
import { EventEnvelopeSchema, TransfersPostedSchema } from "../../../gen/tally/events/v1/events_pb";
import { LedgerTransferState, PostingMode } from "../../../gen/tally/account/v1/ledger_pb";
import { buildEnvelope } from "../../../platform/outbox/append";
import { RuleAction, RuleKind } from "../../../gen/tally/risk/v1/risk_pb";
import { newId } from "../../../platform/ids";
import { eventually, readEvents } from "../../../test/support/events";
import { TEST_NATS_URL } from "../../../test/support/infra";
import { fund, openAccount, post, profileWhen, riskRows, transfer, withSql } from "./fixtures";
import { startRiskHarness, type RiskHarness } from "./harness";

let h: RiskHarness;
beforeAll(async () => {
  h = await startRiskHarness();
});
afterAll(() => h.stop());

describe("profiles from the ledger's events", () => {
  it("fills the sliding windows, totals and counterparties from transfers posted in the ledger", async () => {
    const [a, b, c] = [await openAccount(h), await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 10_000n);
    await post(h, transfer(a.id, b.id, 100n), transfer(a.id, c.id, 250n));
    await post(h, transfer(a.id, b.id, 50n));
    const profile = await profileWhen(h, a.id, (p) => p!.totalDebitCount === 3n);
    for (const window of [profile.lastMinute!, profile.lastHour!, profile.lastDay!]) {
      expect(window).toMatchObject({ debitCount: 3n, debitSum: 400n, creditCount: 1n, creditSum: 10_000n });
    }
    expect(profile).toMatchObject({ currency: "USD", totalDebitSum: 400n, totalCreditCount: 1n, distinctCounterparties24h: 3n, accountAgeDays: 0n });
    expect(profile.openedAt).toBeDefined();
    expect(profile.firstActivityAt).toBeDefined();
    const received = await profileWhen(h, b.id, (p) => p!.totalCreditCount === 2n);
    expect(received.lastMinute).toMatchObject({ creditCount: 2n, creditSum: 150n, debitCount: 0n });
  });

  it("counts a hold in the windows once, when it is made, and in the totals only what is posted from it", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 10_000n);
    const holds = [100n, 200n, 300n].map((amount) => transfer(a.id, b.id, amount, { mode: PostingMode.PENDING }));
    await post(h, ...holds);
    const held = await profileWhen(h, a.id, (p) => p!.lastMinute!.debitCount === 3n);
    expect([held.lastMinute!.debitSum, held.totalDebitCount, held.distinctCounterparties24h]).toEqual([600n, 0n, 2n]);
    // Capture part of one, void another, and capture a hold made and captured in one batch.
    const both = transfer(a.id, b.id, 50n, { mode: PostingMode.PENDING });
    const finalize = (hold: { id?: string }, mode: PostingMode, amount = 0n) => transfer("", "", amount, { mode, pendingId: hold.id, currency: "" });
    await post(h, finalize(holds[0], PostingMode.POST_PENDING, 60n), finalize(holds[1], PostingMode.VOID_PENDING));
    await post(h, both, finalize(both, PostingMode.POST_PENDING));
    const settled = await profileWhen(h, a.id, (p) => p!.totalDebitCount === 2n);
    expect([settled.lastMinute!.debitCount, settled.lastMinute!.debitSum, settled.totalDebitSum]).toEqual([4n, 650n, 110n]);
  });

  it("counts a replayed or redelivered event once", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 1_000n);
    const t = transfer(a.id, b.id, 70n);
    await post(h, t);
    await profileWhen(h, a.id, (p) => p!.totalDebitCount === 1n);
    const inboxBefore = await riskRows(h, "inbox");
    const [event] = (await readEvents(h.stream.name)).filter(
      (e) => e.envelope.payload.case === "transfersPosted" && e.envelope.payload.value.transfers.some((x) => x.id === t.id),
    );
    // Published again under a new message id, so the stream keeps both copies and risk receives both.
    const nc = await connect({ servers: TEST_NATS_URL });
    const { seq } = await jetstream(nc).publish(event.subject, toBinary(EventEnvelopeSchema, event.envelope), { msgID: newId() });
    // Handled and acked, the copy and everything before it: risk's durable has nothing left to deliver or settle.
    const jsm = await jetstreamManager(nc);
    await eventually(async () => {
      const info = await jsm.consumers.info(h.stream.name, "risk");
      return info.delivered.stream_seq >= seq && info.num_pending === 0 && info.num_ack_pending === 0;
    });
    await nc.close();
    const { profile } = await h.risk.getRiskProfile({ accountId: a.id });
    expect([profile!.totalDebitCount, profile!.totalDebitSum, profile!.lastMinute!.debitCount]).toEqual([1n, 70n, 1n]);
    expect(await riskRows(h, "inbox")).toBe(inboxBefore);
  });

  it("applies the transfers_posted events it handles at once in shared transactions, each event once", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    const posted = () =>
      buildEnvelope("account", {
        subjectId: newId(),
        payload: {
          case: "transfersPosted",
          value: create(TransfersPostedSchema, {
            transfers: [{ id: newId(), debitAccountId: a.id, creditAccountId: b.id, amount: 10n, currency: "USD", state: LedgerTransferState.POSTED, createdAt: timestampFromDate(new Date()) }],
          }),
        },
      });
    const events = Array.from({ length: 16 }, posted);
    const processed = h.service.consumer.processed;
    // All in the stream at once, so the consumer handles several at a time; the first one twice.
    const nc = await connect({ servers: TEST_NATS_URL });
    const js = jetstream(nc);
    await Promise.all([...events, events[0]].map((e) => js.publish(`${h.stream.subjectPrefix}.account.transfers_posted`, toBinary(EventEnvelopeSchema, e), { msgID: newId() })));
    await nc.close();
    await eventually(async () => h.service.consumer.processed >= processed + events.length + 1);
    const { profile } = await h.risk.getRiskProfile({ accountId: a.id });
    expect([profile!.totalDebitCount, profile!.totalDebitSum]).toEqual([16n, 160n]);
    const [inbox] = await withSql(h, (sql) => sql`select count(*)::int as rows, count(distinct xmin::text)::int as transactions from risk.inbox where event_id = any(${events.map((e) => e.id)})`);
    expect(inbox.rows).toBe(16);
    // Recorded by fewer transactions than events: the events handled together shared one.
    expect(inbox.transactions).toBeLessThan(16);
  });

  it("refuses a malformed account id for a profile", async () => {
    await expect(h.risk.getRiskProfile({ accountId: "42" })).rejects.toMatchObject({ reasonName: "INVALID_ID", field: "account_id" });
  });
});

describe("monitoring rules", () => {
  it("raise an alert once and freeze the account through the account service", async () => {
    const { rule } = await h.risk.createRule({
      rule: {
        name: "large outflow",
        kind: RuleKind.MONITORING,
        expression: 'event.state == "posted" && event.amount >= 5000 && "channel" in event.metadata && event.metadata["channel"] == "card"',
        action: RuleAction.FREEZE_ACCOUNT,
        enabled: true,
      },
    });
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 20_000n);
    await post(h, transfer(a.id, b.id, 4_999n, { metadata: { channel: "card" } }));
    const big = transfer(a.id, b.id, 5_000n, { metadata: { channel: "card" } });
    await post(h, big);

    const alert = await eventually(async () => (await h.risk.listAlerts({ accountId: a.id })).alerts[0], 20_000);
    expect(alert).toMatchObject({ ruleId: rule!.id, ruleVersion: 1, accountId: a.id, accountFrozen: true });
    expect(alert.message).toContain(big.id!);
    const { account } = await h.accounts.getAccount({ accountId: a.id });
    expect([account!.status, account!.statusReason]).toEqual([AccountStatus.FROZEN, "risk rule: large outflow"]);
    // The alert is published for others to act on, once.
    const raised = await eventually(async () => {
      const events = (await readEvents(h.stream.name)).filter((e) => e.envelope.type === "alert_raised" && e.envelope.subjectId === a.id);
      return events.length > 0 ? events : undefined;
    });
    expect(raised).toHaveLength(1);
    expect((await h.risk.listAlerts({ accountId: a.id })).alerts).toHaveLength(1);
  });

  it("raise one alert per account per minute, and none for the bank's settlement account", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    const others = await Promise.all(Array.from({ length: 22 }, () => openAccount(h)));
    // 22 deposits in a minute leave the settlement account: not a customer, no alert.
    await Promise.all(others.map((o) => fund(h, o.id, 10n)));
    await fund(h, a.id, 1_000n);
    await post(h, ...Array.from({ length: 25 }, () => transfer(a.id, b.id, 1n)));
    await profileWhen(h, a.id, (p) => p!.lastMinute!.debitCount === 25n);
    const { account: bank } = await h.accounts.getSystemAccount({ currency: "USD" });
    await eventually(async () => (await h.risk.listAlerts({ accountId: a.id })).alerts.length > 0);
    const { alerts } = await h.risk.listAlerts({ accountId: a.id });
    expect(alerts.map((x) => x.message.split(":")[0])).toEqual(["burst of payments"]);
    expect((await h.risk.listAlerts({ accountId: bank!.id })).alerts).toEqual([]);
  });

  it("judge a late event without the activity that came after it", async () => {
    for (const [name, expression] of [
      ["window seen", '"window-test" in event.metadata'],
      ["window burst", '"window-test" in event.metadata && profile.last_minute.debit_count > 20'],
    ]) {
      await h.risk.createRule({ rule: { name, kind: RuleKind.MONITORING, expression, action: RuleAction.ALERT, enabled: true } });
    }
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 1_000n);
    await post(h, ...Array.from({ length: 22 }, () => transfer(a.id, b.id, 1n)));
    await profileWhen(h, a.id, (p) => p!.lastMinute!.debitCount === 22n);
    // Posted half an hour ago, learnt of only now: its last minute held that transfer alone.
    const envelope = buildEnvelope("account", {
      subjectId: a.id,
      payload: {
        case: "transfersPosted",
        value: create(TransfersPostedSchema, {
          transfers: [{ id: newId(), debitAccountId: a.id, creditAccountId: b.id, amount: 5n, currency: "USD", state: LedgerTransferState.POSTED, createdAt: timestampFromDate(new Date(Date.now() - 30 * 60_000)), metadata: { "window-test": "1" } }],
        }),
      },
    });
    const nc = await connect({ servers: TEST_NATS_URL });
    await jetstream(nc).publish(`${h.stream.subjectPrefix}.account.transfers_posted`, toBinary(EventEnvelopeSchema, envelope), { msgID: envelope.id });
    await nc.close();
    const fired = async () => (await h.risk.listAlerts({ accountId: a.id })).alerts.map((x) => x.message.split(":")[0]);
    await eventually(async () => (await fired()).includes("window seen"), 20_000);
    expect(await fired()).not.toContain("window burst");
  });

  it("judge a late event as of its own time, and freeze no account for it", async () => {
    await h.risk.createRule({
      rule: { name: "late check", kind: RuleKind.MONITORING, expression: '"late-test" in event.metadata', action: RuleAction.FREEZE_ACCOUNT, enabled: true },
    });
    const [a, b] = [await openAccount(h), await openAccount(h)];
    const twoHoursAgo = timestampFromDate(new Date(Date.now() - 2 * 3600_000));
    const envelope = buildEnvelope("account", {
      subjectId: a.id,
      payload: {
        case: "transfersPosted",
        value: create(TransfersPostedSchema, {
          transfers: [{ id: newId(), debitAccountId: a.id, creditAccountId: b.id, amount: 5n, currency: "USD", state: LedgerTransferState.POSTED, createdAt: twoHoursAgo, metadata: { "late-test": "1" } }],
        }),
      },
    });
    const nc = await connect({ servers: TEST_NATS_URL });
    await jetstream(nc).publish(`${h.stream.subjectPrefix}.account.transfers_posted`, toBinary(EventEnvelopeSchema, envelope), { msgID: envelope.id });
    await nc.close();
    const alert = await eventually(async () => (await h.risk.listAlerts({ accountId: a.id })).alerts[0], 20_000);
    expect(alert.accountFrozen).toBe(false);
    expect(alert.message).toContain("too old");
    expect((await h.accounts.getAccount({ accountId: a.id })).account!.status).toBe(AccountStatus.ACTIVE);
    // Now, a transfer two hours old lies outside the last minute.
    const { profile } = await h.risk.getRiskProfile({ accountId: a.id });
    expect(profile!.lastMinute!.debitCount).toBe(0n);
  });
});
