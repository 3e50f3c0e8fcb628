import { PostingMode, PostingResult } from "../../../gen/tally/account/v1/ledger_pb";
import { newId } from "../../../platform/ids";
import { balanceOf, fund, openAccount, post, settlement, transfer, withSql, type TransferInit } from "./fixtures";
import { seededRandom } from "../../../test/support/random";
import { startAccountHarness, type AccountHarness } from "./harness";

/**
 * The bank invariants under contention: 50 concurrent clients each send 200
 * random transfers among 20 accounts, half of them into one hot account,
 * with overdraft limits, holds, captures, voids and replays in the mix; each hold
 * is captured, voided and captured again all at once, and finalized once.
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
  let finalizedOtherThanOnce = 0;
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
          // A part captured, a void and a whole capture, all at once: exactly one of them finalizes the hold.
          const finalizes = [
            { amount: BigInt(1 + Math.floor(rnd() * Number(amount))), mode: PostingMode.POST_PENDING },
            { amount: 0n, mode: PostingMode.VOID_PENDING },
            { amount, mode: PostingMode.POST_PENDING },
          ];
          const done = (await Promise.all(finalizes.map((f) => post(h, { id: newId(), pendingId: hold.id, ...f })))).flat();
          done.forEach((d) => count(d.result));
          const won = done.flatMap((d, k) => (d.result === PostingResult.OK ? [k] : []));
          if (won.length !== 1) finalizedOtherThanOnce++;
          const [k] = won;
          if (k !== undefined && finalizes[k].mode === PostingMode.POST_PENDING) {
            move(debit, credit, finalizes[k].amount);
            applied.add(done[k].transferId);
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
  expect(finalizedOtherThanOnce).toBe(0);
  expect(results.get(PostingResult.PENDING_TRANSFER_ALREADY_POSTED)! + results.get(PostingResult.PENDING_TRANSFER_ALREADY_VOIDED)!).toBeGreaterThan(0);
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
  // Money moved between customers only: what they hold together is what the bank paid in.
  const customerTotal = (await Promise.all(ids.map((id) => balanceOf(h, id)))).reduce((sum, b) => sum + b.posted, 0n);
  expect(customerTotal).toBe(BigInt(ACCOUNTS) * 1_000n);
  expect((await balanceOf(h, bank)).posted).toBe(-customerTotal);

  const report = await h.ledger.reconcile({});
  expect(report.breaches).toEqual([]);
  // The dollars that moved are in the totals, not an empty list.
  expect(BigInt(report.totals.find((t) => t.currency === "USD")?.debitsPosted ?? 0)).toBeGreaterThanOrEqual(customerTotal);
  for (const t of report.totals) expect([t.debitsPosted, t.debitsPending]).toEqual([t.creditsPosted, t.creditsPending]);

  const stored = await withSql(h, (sql) => sql<{ id: string }[]>`select id from account.ledger_transfers where mode in ('post', 'post_pending') and debit_account_id <> ${bank}`);
  expect(new Set(stored.map((r) => r.id))).toEqual(applied);
}, 300_000);
