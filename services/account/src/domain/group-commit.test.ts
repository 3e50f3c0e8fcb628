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
