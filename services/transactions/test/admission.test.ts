import { status as Status } from "@grpc/grpc-js";
import { createServer, type Server, type Socket } from "node:net";
import { TransferStatus } from "../../../gen/tally/transactions/v1/transfer_pb";
import type { RemoteError } from "../../../platform/grpc/status";
import { balanceOf, fund, openAccount, transferRequest } from "./fixtures";
import { startTransactionsHarness, type TransactionsHarness } from "./harness";

/**
 * Admission control: a replica works on TRANSFERS_IN_FLIGHT movements at
 * once, queues TRANSFERS_QUEUED more, and refuses the rest before they
 * record anything. Risk here accepts connections and never answers, so each
 * transfer at work holds its place for the whole risk deadline.
 */
let h: TransactionsHarness;
let silentRisk: Server;
const sockets: Socket[] = [];

beforeAll(async () => {
  silentRisk = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => silentRisk.listen(0, "127.0.0.1", resolve));
  const riskPort = (silentRisk.address() as { port: number }).port;
  h = await startTransactionsHarness({
    withRisk: false,
    riskPort,
    transactionsEnv: { TRANSFERS_IN_FLIGHT: "2", TRANSFERS_QUEUED: "2", RISK_DEADLINE_MS: "1500", RISK_BREAKER_FAILURES: "100" },
  });
});

afterAll(async () => {
  await h?.stop();
  for (const socket of sockets) socket.destroy();
  silentRisk?.close();
});

it("works on a few at once, queues a few, and refuses the rest as UNAVAILABLE (OVERLOADED) without recording them; refused requests sent again go through", async () => {
  const [a, b] = [await openAccount(h), await openAccount(h)];
  await fund(h, a.id, 10_000n);
  const requests = Array.from({ length: 6 }, () => transferRequest(a.id, b.id, 100n));
  const answers = await Promise.allSettled(requests.map((r) => h.transactions.createTransfer(r)));

  const refused = answers.flatMap((answer, i) => (answer.status === "rejected" ? [{ request: requests[i], err: answer.reason as RemoteError }] : []));
  expect(refused).toHaveLength(2);
  for (const { err } of refused) expect([err.code, err.reasonName, err.message]).toEqual([Status.UNAVAILABLE, "OVERLOADED", expect.stringContaining("try again")]);
  // The four let in waited for risk, then the fallback policy held them.
  const admitted = answers.flatMap((answer) => (answer.status === "fulfilled" ? [answer.value.transfer!] : []));
  expect(admitted.map((t) => [t.status, t.risk?.fallback])).toEqual(Array.from({ length: 4 }, () => [TransferStatus.HELD, true]));
  // Nothing of the refused ones was recorded: only four transfers exist, holding four amounts.
  expect((await h.transactions.listTransfers({ accountId: a.id })).transfers).toHaveLength(4);
  expect((await balanceOf(h, a.id)).debitsPending).toBe(400n);

  const again = await Promise.all(refused.map(({ request }) => h.transactions.createTransfer(request)));
  expect(again.map(({ transfer }) => transfer!.status)).toEqual([TransferStatus.HELD, TransferStatus.HELD]);
  expect((await balanceOf(h, a.id)).debitsPending).toBe(600n);
}, 30_000);
