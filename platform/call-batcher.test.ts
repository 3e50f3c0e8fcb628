import { trace, type SpanContext } from "@opentelemetry/api";
import { recordSpans } from "../test/support/tracing";
import { CallBatcher } from "./call-batcher";

const exporter = recordSpans();
beforeEach(() => exporter.reset());

/** A call the test answers by hand, recording the items of each. */
function manualCall() {
  const calls: number[][] = [];
  const answer: ((fail?: Error) => void)[] = [];
  const call = (items: number[]) => {
    calls.push(items);
    return new Promise<string[]>((resolve, reject) => answer.push((fail) => (fail ? reject(fail) : resolve(items.map((n) => `ok ${n}`)))));
  };
  return { calls, answer, call };
}

const tick = () => new Promise((r) => setImmediate(r));
const tracer = () => trace.getTracer("test");

it("sends a lone item at once, and the items that arrive meanwhile together in the next call, each answered with its own outcome", async () => {
  const m = manualCall();
  const batcher = new CallBatcher("Svc/Call", m.call, { concurrency: 1, maxItems: 10, retryAlone: () => true });
  const first = batcher.submit(1);
  const rest = [2, 3, 4].map((n) => batcher.submit(n));
  expect(m.calls).toEqual([[1]]);
  m.answer[0]();
  await tick();
  expect(m.calls[1]).toEqual([2, 3, 4]);
  m.answer[1]();
  expect(await first).toBe("ok 1");
  expect(await Promise.all(rest)).toEqual(["ok 2", "ok 3", "ok 4"]);
});

it("sends one caller's items in one call, alone or with other callers', each answered with its own outcome", async () => {
  const m = manualCall();
  const batcher = new CallBatcher("Svc/Call", m.call, { concurrency: 1, maxItems: 10, retryAlone: () => true });
  const first = batcher.submitMany([1, 2]);
  const [several, one] = [batcher.submitMany([3, 4, 5]), batcher.submit(6)];
  expect(m.calls).toEqual([[1, 2]]);
  m.answer[0]();
  await tick();
  expect(m.calls[1]).toEqual([3, 4, 5, 6]);
  m.answer[1]();
  expect([await first, await several, await one]).toEqual([["ok 1", "ok 2"], ["ok 3", "ok 4", "ok 5"], "ok 6"]);
});

it("fails every item of a call that failed as a whole, unless retryAlone sends each again on its own", async () => {
  const m = manualCall();
  const down = new CallBatcher("Svc/Call", m.call, { concurrency: 1, maxItems: 10, retryAlone: () => false });
  const busy = down.submit(0);
  const failed = [1, 2].map((n) => down.submit(n).catch((err: Error) => err.message));
  m.answer[0]();
  await busy;
  await tick();
  m.answer[1](new Error("unavailable"));
  expect(await Promise.all(failed)).toEqual(["unavailable", "unavailable"]);
  expect(m.calls).toEqual([[0], [1, 2]]);

  const n = manualCall();
  const refusing = new CallBatcher("Svc/Call", n.call, { concurrency: 1, maxItems: 10, retryAlone: () => true });
  const head = refusing.submit(0);
  const retried = [1, 2].map((i) => refusing.submit(i));
  n.answer[0]();
  await head;
  await tick();
  n.answer[1](new Error("one of them is bad"));
  await tick();
  expect(n.calls).toEqual([[0], [1, 2], [1], [2]]);
  n.answer[2]();
  n.answer[3]();
  expect(await Promise.all(retried)).toEqual(["ok 1", "ok 2"]);
});

it("runs a shared call in the first caller's trace, linked to every caller, and gives each other caller a span of its own linked to it", async () => {
  const m = manualCall();
  const batcher = new CallBatcher("Svc/Call", m.call, { concurrency: 1, maxItems: 10, retryAlone: () => true });
  const callers: SpanContext[] = [];
  const ask = (n: number) =>
    tracer().startActiveSpan(`caller ${n}`, async (span) => {
      callers.push(span.spanContext());
      try {
        return await batcher.submit(n);
      } finally {
        span.end();
      }
    });
  const lone = ask(0);
  const together = [ask(1), ask(2), ask(3)];
  m.answer[0]();
  await lone;
  await tick();
  m.answer[1]();
  await Promise.all(together);

  const spans = exporter.getFinishedSpans();
  // The lone call made no span of the batcher's.
  const batch = spans.filter((s) => s.name === "Svc/Call batch");
  expect(batch).toHaveLength(1);
  expect(batch[0].spanContext().traceId).toBe(callers[1].traceId);
  expect(batch[0].parentSpanContext?.spanId).toBe(callers[1].spanId);
  expect(batch[0].links.map((l) => l.context.spanId)).toEqual(callers.slice(1).map((c) => c.spanId));
  expect(batch[0].attributes["tally.batch.size"]).toBe(3);
  const own = spans.filter((s) => s.name === "Svc/Call");
  expect(own.map((s) => s.parentSpanContext?.spanId)).toEqual(callers.slice(2).map((c) => c.spanId));
  expect(own.map((s) => s.spanContext().traceId)).toEqual(callers.slice(2).map((c) => c.traceId));
  for (const span of own) expect(span.links.map((l) => l.context.spanId)).toEqual([batch[0].spanContext().spanId]);
});
