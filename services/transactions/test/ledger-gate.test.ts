import { create } from "@bufbuild/protobuf";
import { LedgerTransferSchema, PostingResult } from "../../../gen/tally/account/v1/ledger_pb";
import { LedgerService } from "../../../gen/tally/account/v1/ledger_service_pb";
import { createServiceClient, type ClientOf } from "../../../platform/grpc/client";
import type { GrpcServer } from "../../../platform/grpc/server";
import { startServiceDouble } from "../../../test/support/service-double";
import { LedgerGate } from "../src/domain/ledger-gate";
import { transferRow as row } from "./fixtures";

/**
 * The ledger gate against a real gRPC ledger server that answers a call only
 * when the test lets it, as an account replica that hangs (SIGSTOP) would.
 */
const held: (() => void)[] = [];
let holdNext = false;
/** The transfer ids of each call, in the order the calls came. */
const calls: string[][] = [];
let server: GrpcServer;
let client: ClientOf<typeof LedgerService>;

beforeAll(async () => {
  let target: string;
  ({ server, target } = await startServiceDouble(LedgerService, {
    postTransfers: async (request) => {
      calls.push(request.transfers.map((t) => t.id));
      if (holdNext) {
        holdNext = false;
        await new Promise<void>((resolve) => held.push(resolve));
      }
      return { results: request.transfers.map((t) => ({ result: PostingResult.OK, transfer: create(LedgerTransferSchema, { id: t.id, amount: t.amount }) })) };
    },
  }));
  client = createServiceClient(LedgerService, target, { defaultTimeoutMs: 30_000 });
});

afterAll(async () => {
  held.forEach((answer) => answer());
  client?.close();
  await server?.stop(1000);
});


it("a call the ledger does not answer gives up its place: the postings behind it go in the next call and are answered", async () => {
  const gate = new LedgerGate(client);
  const [stuck, behind] = [row(), [row(), row()]];
  holdNext = true;
  let stuckAnswered = false;
  const first = gate.post(stuck).then((outcome) => ((stuckAnswered = true), outcome));
  const rest = behind.map((r) => gate.post(r));
  // Answered while the first call is still out: it no longer holds the only place.
  const outcomes = await Promise.all(rest);
  expect(outcomes.map((o) => o.ok && o.transfer.id)).toEqual(behind.map((r) => r.id));
  expect(stuckAnswered).toBe(false);
  expect(calls.slice(-2)).toEqual([[stuck.id], behind.map((r) => r.id)]);
  held.shift()!();
  expect((await first).ok).toBe(true);
});
