import { trace, type SpanContext } from "@opentelemetry/api";
import { PostingResult } from "../../../gen/tally/account/v1/ledger_pb";
import { newId } from "../../../platform/ids";
import { recordSpans } from "../../../test/support/tracing";
import { balanceOf, fund, openAccount, post, transfer, withSql } from "./fixtures";
import { startAccountHarness, type AccountHarness } from "./harness";

/**
 * Group commit in the real service: postings that arrive while another
 * commits are written together, in one transaction, and each keeps its own
 * outcome. One commit at a time here, so that every burst groups.
 */
let h: AccountHarness;
const spans = recordSpans();

beforeAll(async () => {
  h = await startAccountHarness({ LEDGER_CONCURRENT_COMMITS: "1" });
});
afterAll(() => h.stop());

/** How many transactions wrote these transfers' entries: now() is a transaction's start, the same for all it writes. */
const transactionsOf = (ids: string[]) =>
  withSql(h, async (sql) => (await sql`select count(distinct created_at)::int as n from account.entries where transfer_id in ${sql(ids)}`)[0].n as number);

it("posts a burst of transfers to one hot account in far fewer transactions than requests", async () => {
  const hot = await openAccount(h);
  const payers = [];
  for (let i = 0; i < 30; i++) {
    const payer = await openAccount(h);
    await fund(h, payer.id, 100n);
    payers.push(payer.id);
  }
  const transfers = payers.map((payer) => transfer(payer, hot.id, 10n));
  const results = (await Promise.all(transfers.map((t) => post(h, t)))).flat();
  expect(results.map((r) => r.result)).toEqual(payers.map(() => PostingResult.OK));
  expect((await balanceOf(h, hot.id)).posted).toBe(300n);
  expect(await transactionsOf(transfers.map((t) => t.id!))).toBeLessThan(10);
});

it("keeps each request's outcome its own when they share a transaction", async () => {
  const [payer, short, payee] = [await openAccount(h), await openAccount(h), await openAccount(h)];
  await fund(h, payer.id, 1_000n);
  await fund(h, short.id, 5n);
  const paid = transfer(payer.id, payee.id, 100n);
  const [first, ok, refused, open, replayed] = await Promise.all([
    // Holds the one commit slot, so the four after it arrive while it commits and share the next transaction.
    post(h, transfer(payer.id, payee.id, 1n)),
    post(h, paid),
    post(h, transfer(short.id, payee.id, 50n)),
    // A chain left open at the end of a request ends there; it does not join the next request's items.
    post(h, transfer(payer.id, payee.id, 7n, { linked: true })),
    post(h, { ...paid }),
  ]);
  expect(first[0].result).toBe(PostingResult.OK);
  expect(refused.map((r) => r.result)).toEqual([PostingResult.INSUFFICIENT_FUNDS]);
  expect(open.map((r) => r.result)).toEqual([PostingResult.LINKED_EVENT_CHAIN_OPEN]);
  expect([ok[0].result, replayed[0].result].sort()).toEqual([PostingResult.OK, PostingResult.EXISTS].sort());
  expect((await balanceOf(h, payee.id)).posted).toBe(101n);
  expect((await balanceOf(h, short.id)).posted).toBe(5n);
});

it("ties each caller's trace to the transaction it shared: the first's holds it, each other's has a span linked to it", async () => {
  const [payer, payee] = [await openAccount(h), await openAccount(h)];
  await fund(h, payer.id, 1_000n);
  const callers: SpanContext[] = [];
  const ask = (n: number) =>
    trace.getTracer("test").startActiveSpan(`caller ${n}`, async (span) => {
      callers.push(span.spanContext());
      try {
        const request = { id: newId(), debitAccountId: payer.id, creditAccountId: payee.id, amount: 1n, currency: "USD", mode: "post" as const, pendingId: "", timeoutSeconds: 0n, linked: false, metadata: {} };
        return await h.service.ledger.postTransfers([request]);
      } finally {
        span.end();
      }
    });
  // The first holds the one commit slot; the three after it share the next transaction.
  await Promise.all([ask(0), ask(1), ask(2), ask(3)]);
  const shared = spans.getFinishedSpans().filter((s) => s.name === "ledger commit batch" && s.links.some((l) => l.context.spanId === callers[1].spanId));
  expect(shared).toHaveLength(1);
  expect(shared[0].spanContext().traceId).toBe(callers[1].traceId);
  expect(shared[0].links.map((l) => l.context.spanId)).toEqual(callers.slice(1).map((c) => c.spanId));
  const own = spans.getFinishedSpans().filter((s) => s.name === "ledger commit" && s.links.some((l) => l.context.spanId === shared[0].spanContext().spanId));
  expect(own.map((s) => s.spanContext().traceId).sort()).toEqual(callers.slice(2).map((c) => c.traceId).sort());
});
