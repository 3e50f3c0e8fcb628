import { create } from "@bufbuild/protobuf";
import { AssessmentSchema } from "../../../gen/tally/risk/v1/risk_pb";
import { RiskService } from "../../../gen/tally/risk/v1/risk_service_pb";
import { RiskDecision } from "../../../gen/tally/transactions/v1/transfer_pb";
import { createServiceClient, type ClientOf } from "../../../platform/grpc/client";
import type { GrpcServer } from "../../../platform/grpc/server";
import { newId } from "../../../platform/ids";
import { testLogger } from "../../../test/support/infra";
import { startServiceDouble } from "../../../test/support/service-double";
import { RiskGate } from "../src/domain/risk-gate";
import type { TransferRow } from "../src/db/schema";
import { transferRow as row } from "./fixtures";

/**
 * The risk gate's breaker, against a real gRPC risk server whose answers are
 * slow when the test says so: a burst of calls that miss the deadline while
 * most succeed leaves it closed; risk failing most calls opens it.
 */
// Generous, so that only the calls the test makes slow miss it, however busy the machine.
const DEADLINE_MS = 400;
let slow = false;
/** How long a slow answer takes. */
let slowMs = DEADLINE_MS * 3;
/** Only calls carrying more than this many transfers are slow. */
let slowAbove = 0;
/** How many transfers each call carried, and the deadline it came with. */
const callSizes: number[] = [];
const callDeadlines: (Date | undefined)[] = [];
let server: GrpcServer;
let client: ClientOf<typeof RiskService>;

beforeAll(async () => {
  let target: string;
  ({ server, target } = await startServiceDouble(RiskService, {
    assessTransfers: async (request, ctx) => {
      callSizes.push(request.transfers.length);
      callDeadlines.push(ctx.deadline);
      if (slow && request.transfers.length > slowAbove) await new Promise((r) => setTimeout(r, slowMs));
      return { results: request.transfers.map((t, index) => ({ index, assessment: create(AssessmentSchema, { id: newId(), transferId: t.id, decision: RiskDecision.APPROVE }) })) };
    },
  }));
  client = createServiceClient(RiskService, target, { defaultTimeoutMs: 10_000 });
  // Connected before the gates judge any call by its deadline.
  await client.assessTransfers({ transfers: [{ id: newId() }] });
});

afterAll(async () => {
  client?.close();
  await server?.stop(1000);
});


/** Assesses `count` transfers one after another; how many risk decided. */
async function assess(gate: RiskGate, count: number): Promise<number> {
  let decided = 0;
  for (let i = 0; i < count; i++) if ((await gate.assess(row())) !== undefined) decided++;
  return decided;
}

it("stays closed through a burst of missed deadlines while most calls succeed", async () => {
  const gate = new RiskGate(client, { deadlineMs: DEADLINE_MS, breakerFailures: 5, breakerCooldownMs: 60_000 }, testLogger());
  expect(await assess(gate, 20)).toBe(20);
  slow = true;
  // Six in a row miss the deadline, as calls in flight together do when risk stalls for a moment.
  expect(await assess(gate, 6)).toBe(0);
  slow = false;
  expect(gate.state).toBe("closed");
  expect(await assess(gate, 10)).toBe(10);
});

it("opens once most recent calls fail, and then stops waiting on risk at all", async () => {
  const gate = new RiskGate(client, { deadlineMs: DEADLINE_MS, breakerFailures: 5, breakerCooldownMs: 60_000 }, testLogger());
  expect(await assess(gate, 5)).toBe(5);
  slow = true;
  try {
    expect(await assess(gate, 6)).toBe(0);
    expect(gate.state).toBe("open");
    const calls = callSizes.length;
    expect(await gate.assess(row())).toBeUndefined();
    // Refused by the open breaker at once: risk was not called.
    expect(callSizes.length).toBe(calls);
  } finally {
    slow = false;
  }
});

it("shares one call among the assessments asked for while a call is out", async () => {
  const gate = new RiskGate(client, { deadlineMs: DEADLINE_MS, breakerFailures: 5, breakerCooldownMs: 60_000 }, testLogger());
  callSizes.length = 0;
  const together = await Promise.all(Array.from({ length: 6 }, () => gate.assess(row())));
  expect(together.every((a) => a !== undefined && "outcome" in a && a.outcome.decision === RiskDecision.APPROVE)).toBe(true);
  // The first went alone; the five asked for while it was out shared the next call.
  expect(callSizes).toEqual([1, 5]);
});

it("splits what is asked for together into calls risk reads whole, however large the transfers' texts", async () => {
  const gate = new RiskGate(client, { deadlineMs: DEADLINE_MS * 10, breakerFailures: 5, breakerCooldownMs: 60_000 }, testLogger());
  // As large as a transfer may be: about 58 KB each, 17 MB together, where risk reads 8 MiB a call.
  const large = (): TransferRow => ({
    ...row(),
    description: "€".repeat(1000),
    metadata: Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`key-${i}`.padEnd(64, "k"), "€".repeat(512)])),
  });
  callSizes.length = 0;
  const answers = await Promise.all(Array.from({ length: 300 }, () => gate.assess(large())));
  expect(answers.filter((a) => a === undefined || !("outcome" in a))).toEqual([]);
  expect(callSizes.reduce((n, size) => n + size, 0)).toBe(300);
  expect(callSizes.length).toBeGreaterThan(2);
});

it("gives a call the deadline for each 50 assessments it carries", async () => {
  const gate = new RiskGate(client, { deadlineMs: DEADLINE_MS, breakerFailures: 5, breakerCooldownMs: 60_000 }, testLogger());
  // Calls of more than one take longer than one deadline; the first, alone, is answered at once.
  [slow, slowMs, slowAbove] = [true, DEADLINE_MS * 1.25, 1];
  try {
    callSizes.length = 0;
    const answers = await Promise.all(Array.from({ length: 60 }, () => gate.assess(row())));
    expect(callSizes).toEqual([1, 59]);
    // The 59 together had twice as long, and were answered.
    expect(answers.every((a) => a !== undefined && "outcome" in a)).toBe(true);
  } finally {
    [slow, slowMs, slowAbove] = [false, DEADLINE_MS * 3, 0];
  }
});

it("keeps no transfer waiting on a risk that does not answer longer than its deadline, though it queued behind a call risk never answered", async () => {
  const gate = new RiskGate(client, { deadlineMs: DEADLINE_MS, breakerFailures: 50, breakerCooldownMs: 60_000 }, testLogger());
  slow = true;
  try {
    callDeadlines.length = 0;
    const first = gate.assess(row());
    // Asked while the first call is out: they wait for it, then go together.
    await new Promise((r) => setTimeout(r, DEADLINE_MS / 4));
    const askedAt = Date.now();
    const queued = await Promise.all(Array.from({ length: 5 }, () => gate.assess(row())));
    expect([await first, ...queued].every((a) => a === undefined)).toBe(true);
    // Their call had to be answered within their own deadline, counted from when they asked: not
    // the rest of the first call's and then a whole one of their own.
    expect(callDeadlines).toHaveLength(2);
    expect(callDeadlines[1]!.getTime()).toBeLessThanOrEqual(askedAt + DEADLINE_MS + 50);
  } finally {
    slow = false;
  }
});
