import { GroupCommit } from "./group-commit";

/** A commit the test completes by hand, recording the groups it was given. */
function manualCommit() {
  const groups: number[][][] = [];
  const pending: { resolve: () => void; reject: (err: Error) => void }[] = [];
  const commit = (requests: number[][]) => {
    groups.push(requests);
    return new Promise<string[][]>((resolve, reject) => {
      pending.push({ resolve: () => resolve(requests.map((r) => r.map((n) => `ok ${n}`))), reject });
    });
  };
  return { groups, pending, commit };
}

const tick = () => new Promise((r) => setImmediate(r));

it("commits a request at once when fewer than `concurrency` groups are committing", async () => {
  const m = manualCommit();
  const group = new GroupCommit(m.commit, { concurrency: 2, maxItems: 10 });
  const [a, b] = [group.submit([1]), group.submit([2])];
  expect(m.groups).toEqual([[[1]], [[2]]]);
  m.pending.forEach((p) => p.resolve());
  expect(await a).toEqual(["ok 1"]);
  expect(await b).toEqual(["ok 2"]);
});

it("commits the requests that arrive meanwhile together, in arrival order, up to maxItems", async () => {
  const m = manualCommit();
  const group = new GroupCommit(m.commit, { concurrency: 1, maxItems: 5 });
  const answers = [group.submit([1]), group.submit([2, 3]), group.submit([4]), group.submit([5, 6]), group.submit([7])];
  expect(m.groups).toEqual([[[1]]]);
  m.pending[0].resolve();
  await tick();
  // [2, 3], [4] fit in five items with [5, 6]; [7] waits for the next group.
  expect(m.groups[1]).toEqual([[2, 3], [4], [5, 6]]);
  m.pending[1].resolve();
  await tick();
  expect(m.groups[2]).toEqual([[7]]);
  m.pending[2].resolve();
  expect(await Promise.all(answers)).toEqual([["ok 1"], ["ok 2", "ok 3"], ["ok 4"], ["ok 5", "ok 6"], ["ok 7"]]);
});

it("lets a request larger than maxItems go alone", async () => {
  const m = manualCommit();
  const group = new GroupCommit(m.commit, { concurrency: 1, maxItems: 2 });
  const answer = group.submit([1, 2, 3]);
  expect(m.groups).toEqual([[[1, 2, 3]]]);
  m.pending[0].resolve();
  expect(await answer).toEqual(["ok 1", "ok 2", "ok 3"]);
});

it("commits each request of a failed group alone, so only the one that fails alone fails", async () => {
  const commits: number[][][] = [];
  const group = new GroupCommit(
    async (requests: number[][]) => {
      commits.push(requests);
      if (requests.some((r) => r.includes(13))) throw new Error("unlucky");
      return requests.map((r) => r.map(String));
    },
    { concurrency: 1, maxItems: 10 },
  );
  const first = group.submit([1]);
  const answers = [group.submit([2]), group.submit([13]), group.submit([4])].map((p) => p.then((v) => v, (err: Error) => err.message));
  expect(await first).toEqual(["1"]);
  expect(await Promise.all(answers)).toEqual([["2"], "unlucky", ["4"]]);
  expect(commits).toEqual([[[1]], [[2], [13], [4]], [[2]], [[13]], [[4]]]);
});

describe("with lock keys", () => {
  // Items are "account:n"; an item locks its account.
  const account = (item: string) => [item.split(":")[0]];
  function manualKeyedCommit() {
    const groups: string[][][] = [];
    const pending: (() => void)[] = [];
    const commit = (requests: string[][]) => {
      groups.push(requests);
      return new Promise<string[][]>((resolve) => pending.push(() => resolve(requests.map((r) => r.map((i) => `ok ${i}`)))));
    };
    return { groups, pending, commit };
  }

  it("holds back requests for a row a committing group locks, lets others go beside it, then commits the held ones together", async () => {
    const m = manualKeyedCommit();
    const group = new GroupCommit(m.commit, { concurrency: 4, maxItems: 10 }, account);
    const answers = [group.submit(["hot:1"]), group.submit(["hot:2"]), group.submit(["a:3"]), group.submit(["hot:4"]), group.submit(["b:5"])];
    // Without keys, all four places would fill: hot:2 and hot:4 would each start a transaction only to wait on hot's lock.
    expect(m.groups).toEqual([[["hot:1"]], [["a:3"]], [["b:5"]]]);
    m.pending[0]();
    await tick();
    expect(m.groups[3]).toEqual([["hot:2"], ["hot:4"]]);
    m.pending.slice(1).forEach((resolve) => resolve());
    expect(await Promise.all(answers)).toEqual([["ok hot:1"], ["ok hot:2"], ["ok a:3"], ["ok hot:4"], ["ok b:5"]]);
  });

  const twoAccounts = (item: string) => item.split("+");

  it("holds a request back while any one of its rows is locked, and those after it on its rows behind it", async () => {
    const m = manualKeyedCommit();
    const group = new GroupCommit(m.commit, { concurrency: 4, maxItems: 10 }, twoAccounts);
    const answers = [group.submit(["a+b"]), group.submit(["b+c"]), group.submit(["c+d"]), group.submit(["e+f"])];
    // b+c waits for a+b; c+d, though a+b holds none of its rows, waits behind b+c for c; e+f goes.
    expect(m.groups).toEqual([[["a+b"]], [["e+f"]]]);
    m.pending[0]();
    await tick();
    expect(m.groups[2]).toEqual([["b+c"], ["c+d"]]);
    m.pending.slice(1).forEach((resolve) => resolve());
    expect(await Promise.all(answers)).toEqual([["ok a+b"], ["ok b+c"], ["ok c+d"], ["ok e+f"]]);
  });

  it("never lets a request that needs two busy rows be passed over by a stream of requests for either", async () => {
    const m = manualKeyedCommit();
    const group = new GroupCommit(m.commit, { concurrency: 4, maxItems: 10 }, twoAccounts);
    const answers = [group.submit(["x+p0"]), group.submit(["y+q0"])];
    const both = group.submit(["x+y"]);
    let committed = false;
    void both.then(() => (committed = true));
    // Each stream commits in turn, and each time a new request of it arrives; x+y must get its turn.
    for (let round = 1; round <= 4 && !m.groups.some((g) => g.some((r) => r[0] === "x+y")); round++) {
      answers.push(group.submit([`x+p${round}`]), group.submit([`y+q${round}`]));
      m.pending.splice(0).forEach((resolve) => resolve());
      await tick();
    }
    expect(m.groups.flat().map((r) => r[0])).toContain("x+y");
    m.pending.splice(0).forEach((resolve) => resolve());
    await tick();
    m.pending.splice(0).forEach((resolve) => resolve());
    expect(await both).toEqual(["ok x+y"]);
    expect(committed).toBe(true);
    await Promise.all(answers);
  });
});

it("with onePerKey, commits requests sharing a key in turn, never in one group", async () => {
  const m = manualCommit();
  const group = new GroupCommit(m.commit, { concurrency: 1, maxItems: 10, onePerKey: true }, (n: number) => [String(n % 2)]);
  const answers = [group.submit([1]), group.submit([3]), group.submit([2]), group.submit([5]), group.submit([4])];
  expect(m.groups).toEqual([[[1]]]);
  m.pending[0].resolve();
  await tick();
  // 3 and 5 share 1's key (odd), 2 and 4 theirs (even): one of each per group.
  expect(m.groups[1]).toEqual([[3], [2]]);
  m.pending[1].resolve();
  await tick();
  expect(m.groups[2]).toEqual([[5], [4]]);
  m.pending[2].resolve();
  expect(await Promise.all(answers)).toEqual([["ok 1"], ["ok 3"], ["ok 2"], ["ok 5"], ["ok 4"]]);
});

it("with freePlaceAfterMs, a group still at work that long gives up its place to the requests behind it, and still answers its own", async () => {
  const m = manualCommit();
  const group = new GroupCommit(m.commit, { concurrency: 1, maxItems: 10, freePlaceAfterMs: 50 });
  const stuck = group.submit([1]);
  const behind = [group.submit([2]), group.submit([3])];
  expect(m.groups).toEqual([[[1]]]);
  await new Promise((r) => setTimeout(r, 100));
  // The first still out, the two behind it went together in the place it gave up.
  expect(m.groups).toEqual([[[1]], [[2], [3]]]);
  m.pending[1].resolve();
  expect(await Promise.all(behind)).toEqual([["ok 2"], ["ok 3"]]);
  m.pending[0].resolve();
  expect(await stuck).toEqual(["ok 1"]);
  // Its place was given up once: when it ends, one group at a time still.
  const [c, d] = [group.submit([4]), group.submit([5])];
  expect(m.groups.slice(2)).toEqual([[[4]]]);
  m.pending[2].resolve();
  await tick();
  expect(m.groups.slice(3)).toEqual([[[5]]]);
  m.pending[3].resolve();
  expect([await c, await d]).toEqual([["ok 4"], ["ok 5"]]);
});

it("gives up at most `concurrency` places at once: one more overrunning keeps its place until one of those ends", async () => {
  const m = manualCommit();
  const group = new GroupCommit(m.commit, { concurrency: 1, maxItems: 10, freePlaceAfterMs: 50 });
  const answers = [group.submit([1])];
  await new Promise((r) => setTimeout(r, 100));
  // The first gave up its place: the second goes beside it.
  answers.push(group.submit([2]));
  expect(m.groups).toEqual([[[1]], [[2]]]);
  await new Promise((r) => setTimeout(r, 100));
  // The second overran too, but one is out beyond its place already: the third waits.
  answers.push(group.submit([3]));
  expect(m.groups).toHaveLength(2);
  m.pending[0].resolve();
  await tick();
  // The first ended: the second gives up its place, and the third goes.
  expect(m.groups[2]).toEqual([[3]]);
  m.pending[1].resolve();
  m.pending[2].resolve();
  expect(await Promise.all(answers)).toEqual([["ok 1"], ["ok 2"], ["ok 3"]]);
});
