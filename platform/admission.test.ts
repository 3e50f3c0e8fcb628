import { AdmissionLimit } from "./admission";
import { DomainError, ErrorReason } from "./errors";

/** Work that runs until the test ends it; `started` says whether admission let it start. */
function job() {
  let end!: () => void;
  const done = new Promise<void>((resolve) => (end = resolve));
  const state = { started: false, end, work: () => ((state.started = true), done) };
  return state;
}

/** Lets every promise settled by now run its continuations. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

const reasonOf = (promise: Promise<unknown>) => promise.then(() => undefined, (err: unknown) => (err instanceof DomainError ? ErrorReason[err.reason] : String(err)));

describe("AdmissionLimit", () => {
  it("starts the waiting in order of arrival, each as a place frees, and refuses what the queue cannot hold", async () => {
    const limit = new AdmissionLimit(1, 2);
    const [a, b, c] = [job(), job(), job()];
    const runs = [a, b, c].map((j) => limit.run(j.work));
    await expect(reasonOf(limit.run(async () => "never"))).resolves.toBe("OVERLOADED");
    await settle();
    expect([a.started, b.started, c.started]).toEqual([true, false, false]);
    a.end();
    await settle();
    // A newcomer while others wait goes behind them.
    const d = job();
    const late = limit.run(d.work);
    await settle();
    expect([b.started, c.started, d.started]).toEqual([true, false, false]);
    b.end();
    await settle();
    expect([c.started, d.started]).toEqual([true, false]);
    c.end();
    await settle();
    d.end();
    await Promise.all([...runs, late]);
  });

  it("drops a waiting request whose caller gave up at once, and gives the place it would have had to the next", async () => {
    const limit = new AdmissionLimit(1, 2);
    const [a, b, c, d] = [job(), job(), job(), job()];
    const first = limit.run(a.work);
    const caller = new AbortController();
    const abandoned = reasonOf(limit.run(b.work, caller.signal));
    const waiting = limit.run(c.work);
    caller.abort();
    // Refused now, not when its turn would have come; its place in the queue is free for another.
    await expect(abandoned).resolves.toBe("DEADLINE_EXCEEDED");
    const another = limit.run(d.work);
    a.end();
    await settle();
    expect([b.started, c.started, d.started]).toEqual([false, true, false]);
    c.end();
    await settle();
    expect(d.started).toBe(true);
    d.end();
    await Promise.all([first, waiting, another]);
    // Every place is free again: as many as it takes start at once.
    const next = [job()];
    const run = limit.run(next[0].work);
    expect(next[0].started).toBe(true);
    next[0].end();
    await run;
  });

  it("refuses a request whose caller gave up before it asked, and frees its place when work fails", async () => {
    const limit = new AdmissionLimit(1, 0);
    const gone = new AbortController();
    gone.abort();
    await expect(reasonOf(limit.run(async () => "never", gone.signal))).resolves.toBe("DEADLINE_EXCEEDED");
    await expect(limit.run(() => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    await expect(limit.run(async () => "ran")).resolves.toBe("ran");
  });
});
