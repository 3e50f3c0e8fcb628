import { PostingMode, PostingResult } from "../../../gen/tally/account/v1/ledger_pb";
import { newId } from "../../../platform/ids";
import { balanceOf, fund, openAccount, post, settlement, transfer, withSql, type TransferInit } from "./fixtures";
import { seededRandom } from "../../../test/support/random";
import { startAccountHarness, type AccountHarness } from "./harness";

/**
 * The bank invariants under contention: 50 concurrent clients each send 200
 * random transfers among 20 accounts, half of them into one hot account,
 * with overdraft limits, holds, captures, voids and replays in the mix.
 */
const CLIENTS = 50;
const TRANSFERS_PER_CLIENT = 200;
const ACCOUNTS = 20;

let h: AccountHarness;
beforeAll(async () => {
  h = await startAccountHarness({ DATABASE_POOL_SIZE: "20" });
});
afterAll(() => h.stop());

it("conserves money, keeps every limit and applies each transfer once", async () => {
  const ids: string[] = [];
  const limits = new Map<string, bigint>();
  for (let i = 0; i < ACCOUNTS; i++) {
    const limit = i % 3 === 0 ? 500n : 0n;
    const account = await openAccount(h, { overdraftLimit: limit });
    ids.push(account.id);
    limits.set(account.id, limit);
    await fund(h, account.id, 1_000n);
  }
  const hot = ids[0];
  const bank = await settlement(h);

  // What the clients saw acknowledged, to compare with the ledger afterwards.
  const expected = new Map<string, bigint>(ids.map((id) => [id, 1_000n]));
  const applied = new Set<string>();
  const results = new Map<PostingResult, number>();
  let rpcErrors = 0;
  const count = (r: PostingResult) => results.set(r, (results.get(r) ?? 0) + 1);
  const move = (from: string, to: string, amount: bigint) => {
    expected.set(from, expected.get(from)! - amount);
    expected.set(to, expected.get(to)! + amount);
  };

  async function client(n: number): Promise<void> {
    const rnd = seededRandom(n + 1);
    const pick = () => ids[Math.floor(rnd() * ids.length)];
    let last: TransferInit | undefined;
    for (let i = 0; i < TRANSFERS_PER_CLIENT; i++) {
      const credit = rnd() < 0.5 ? hot : pick();
      let debit = pick();
      while (debit === credit) debit = pick();
      const amount = BigInt(1 + Math.floor(rnd() * 400));
      const roll = rnd();
      try {
        if (roll < 0.05 && last) {
          // A replay of the last transfer: applied if the first try was refused, else it changes nothing.
          const [r] = await post(h, last);
          count(r.result);
          if (r.result === PostingResult.OK) {
            move(last.debitAccountId!, last.creditAccountId!, last.amount!);
            applied.add(r.transferId);
          }
        } else if (roll < 0.2) {
          const hold = transfer(debit, credit, amount, { mode: PostingMode.PENDING });
          const [held] = await post(h, hold);
          count(held.result);
          if (held.result !== PostingResult.OK) continue;
          const capture = rnd() < 0.5;
          const part = capture ? BigInt(1 + Math.floor(rnd() * Number(amount))) : 0n;
          const [done] = await post(h, { id: newId(), pendingId: hold.id, amount: part, mode: capture ? PostingMode.POST_PENDING : PostingMode.VOID_PENDING });
          count(done.result);
          if (done.result === PostingResult.OK && capture) {
            move(debit, credit, part);
            applied.add(done.transferId);
          }
        } else {
          last = transfer(debit, credit, amount);
          const [r] = await post(h, last);
          count(r.result);
          if (r.result === PostingResult.OK) {
            move(debit, credit, amount);
            applied.add(r.transferId);
          }
        }
      } catch {
        rpcErrors++;
      }
    }
  }

  await Promise.all(Array.from({ length: CLIENTS }, (_, n) => client(n)));

  // No deadlock or serialization error ever reached a client.
  expect(rpcErrors).toBe(0);
  expect(results.get(PostingResult.OK)).toBeGreaterThan(1000);
  expect(results.get(PostingResult.INSUFFICIENT_FUNDS)).toBeGreaterThan(0);
  expect(results.get(PostingResult.EXISTS)).toBeGreaterThan(0);

  for (const id of ids) {
    const balance = await balanceOf(h, id);
    // Every acknowledged transfer is in the ledger exactly once, and nothing else is.
    expect(balance.posted).toBe(expected.get(id));
    expect(balance.debitsPending).toBe(0n);
    // No customer beyond its overdraft limit.
    expect(balance.available).toBeGreaterThanOrEqual(-limits.get(id)!);
  }
  const customerTotal = [...expected.values()].reduce((a, b) => a + b, 0n);
  expect(customerTotal).toBe(BigInt(ACCOUNTS) * 1_000n);
  expect((await balanceOf(h, bank)).posted).toBe(-customerTotal);

  const report = await h.ledger.reconcile({});
  expect(report.breaches).toEqual([]);
  for (const t of report.totals) expect([t.debitsPosted, t.debitsPending]).toEqual([t.creditsPosted, t.creditsPending]);

  const stored = await withSql(h, (sql) => sql<{ id: string }[]>`select id from account.ledger_transfers where mode in ('post', 'post_pending') and debit_account_id <> ${bank}`);
  expect(new Set(stored.map((r) => r.id))).toEqual(applied);
}, 300_000);
