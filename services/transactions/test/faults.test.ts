import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type AddressInfo, type Server } from "node:net";
import path from "node:path";
import { TransactionService } from "../../../gen/tally/transactions/v1/transaction_service_pb";
import { RiskDecision, TransferStatus } from "../../../gen/tally/transactions/v1/transfer_pb";
import { createServiceClient } from "../../../platform/grpc/client";
import { checkHealth } from "../../../platform/grpc/health-check";
import { newId } from "../../../platform/ids";
import { eventually, readEvents } from "../../../test/support/events";
import { freePort } from "../../../test/support/infra";
import { balanceOf, fund, openAccount, statusBecomes, transferRequest, withSql } from "./fixtures";
import { startTransactionsHarness, type TransactionsHarness } from "./harness";

/**
 * For the describe it is called in: the services with risk down at first (its port held by a server
 * that drops every connection, so no other suite's server can take it); `riskBack()` starts risk there.
 */
function withRiskDown(): { h: TransactionsHarness; riskBack(): Promise<void> } {
  let placeholder: Server;
  const suite = {
    h: undefined as unknown as TransactionsHarness,
    async riskBack() {
      await new Promise((resolve) => placeholder.close(resolve));
      await suite.h.startRisk();
    },
  };
  beforeAll(async () => {
    placeholder = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => placeholder.listen(0, "127.0.0.1", resolve));
    const riskPort = (placeholder.address() as AddressInfo).port;
    suite.h = await startTransactionsHarness({
      withRisk: false,
      riskPort,
      // Risk is down by its port (calls fail at once); once back, a busy machine must not time its calls out and reopen the breaker.
      transactionsEnv: { RISK_BREAKER_FAILURES: "2", RISK_BREAKER_COOLDOWN_MS: "300", RISK_DEADLINE_MS: "5000" },
    });
  });
  afterAll(async () => {
    if (placeholder.listening) placeholder.close();
    await suite.h.stop();
  });
  return suite;
}

describe("when risk cannot answer", () => {
  const risk = withRiskDown();

  it("lets a hold waiting for risk expire with the ledger's hold", async () => {
    const { h } = risk;
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 1_000n);
    const { transfer } = await h.transactions.authorizeTransfer({ ...transferRequest(a.id, b.id, 300n), expiresInSeconds: 1n });
    expect([transfer!.status, transfer!.risk?.fallback]).toEqual([TransferStatus.HELD, true]);
    await statusBecomes(h, transfer!.id, TransferStatus.EXPIRED);
    expect((await balanceOf(h, a.id)).available).toBe(1_000n);
  });

  it("holds the funds (the default policy), opens the breaker, and settles once risk is back", async () => {
    const { h } = risk;
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 10_000n);
    const held = [];
    for (let i = 0; i < 3; i++) held.push((await h.transactions.createTransfer(transferRequest(a.id, b.id, 1_000n))).transfer!);
    for (const t of held) {
      expect(t.status).toBe(TransferStatus.HELD);
      expect(t.risk).toMatchObject({ fallback: true, decision: RiskDecision.UNSPECIFIED });
    }
    // Opened; on a slow machine its 300 ms cool-down may already be over (half-open: one call may test risk).
    expect(["open", "half-open"]).toContain(h.service.riskGate.state);
    expect(await balanceOf(h, a.id)).toMatchObject({ debitsPending: 3_000n, posted: 10_000n });

    await risk.riskBack();
    // The recovery loop asks risk again once the breaker lets a call through; risk approves.
    for (const t of held) {
      const posted = await statusBecomes(h, t.id, TransferStatus.POSTED, 30_000);
      expect(posted.risk).toMatchObject({ fallback: false, decision: RiskDecision.APPROVE });
    }
    expect(await balanceOf(h, b.id)).toMatchObject({ posted: 3_000n });
    expect(await balanceOf(h, a.id)).toMatchObject({ debitsPending: 0n, posted: 7_000n });
    await eventually(async () => h.service.riskGate.state === "closed");
  });
});

describe("a driver that outlived its claim (paused, say)", () => {
  const risk = withRiskDown();

  const claimOf = (id: string) => withSql(risk.h, async (sql) => (await sql`select lease_until from transactions.transfers where id = ${id}`)[0].lease_until as Date | null);

  it("neither ends the claim of the driver after it nor saves over what that one did", async () => {
    const { h } = risk;
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 1_000n);
    // Held by the fallback, waiting at its assessment for risk to answer.
    const { transfer } = await h.transactions.createTransfer(transferRequest(a.id, b.id, 100n));
    expect([transfer!.status, transfer!.risk?.fallback]).toEqual([TransferStatus.HELD, true]);
    // Another driver claims it (for an hour, so recovery leaves it alone meanwhile).
    const claim = await withSql(h, async (sql) => (await sql`update transactions.transfers set lease_until = now() + interval '1 hour' where id = ${transfer!.id} returning lease_until`)[0].lease_until as Date);
    // Claimed by another: drive() answers the row as it is.
    const current = await h.service.orchestrator.drive(transfer!.id);
    expect([current.status, current.step]).toEqual(["held", "assess"]);

    // A driver whose claim lapsed long ago asks risk again, which still cannot answer: it lets go of its own claim only.
    await h.service.orchestrator.drive(transfer!.id, { ...current, leaseUntil: new Date(Date.now() - 60_000) });
    expect(await claimOf(transfer!.id)).toEqual(claim);

    // Risk is back (another transfer posts through it).
    await risk.riskBack();
    const other = (await h.transactions.createTransfer(transferRequest(a.id, b.id, 1n))).transfer!;
    await eventually(async () => h.service.riskGate.state === "closed" && (await statusBecomes(h, other.id, TransferStatus.POSTED, 30_000)));
    // A driver that last saw the transfer just created, before the fallback held it, has risk approve it: posting the
    // transfer over its hold would fail it (the ledger holds that id already as a hold), so its save must not land.
    const stale = await h.service.orchestrator.drive(transfer!.id, { ...current, status: "created", risk: null, holdExpiresAt: null });
    expect([stale.status, stale.step]).toEqual(["held", "assess"]);

    // Once the other claim lapses, recovery asks risk again and captures the hold.
    await withSql(h, (sql) => sql`update transactions.transfers set lease_until = null where id = ${transfer!.id}`);
    await statusBecomes(h, transfer!.id, TransferStatus.POSTED, 30_000);
    expect(await balanceOf(h, a.id)).toMatchObject({ posted: 899n, debitsPending: 0n });
    expect(await balanceOf(h, b.id)).toMatchObject({ posted: 101n });
  });
});

describe("with RISK_FALLBACK=approve", () => {
  let h: TransactionsHarness;
  beforeAll(async () => {
    h = await startTransactionsHarness({ withRisk: false, transactionsEnv: { RISK_FALLBACK: "approve", RISK_FALLBACK_APPROVE_MAX: "1000" } });
  });
  afterAll(() => h.stop());

  it("approves blindly only up to the limit, and holds what is above it", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 10_000n);
    const small = (await h.transactions.createTransfer(transferRequest(a.id, b.id, 1_000n))).transfer!;
    expect([small.status, small.risk?.fallback, small.risk?.decision]).toEqual([TransferStatus.POSTED, true, RiskDecision.APPROVE]);
    const large = (await h.transactions.createTransfer(transferRequest(a.id, b.id, 1_001n))).transfer!;
    expect([large.status, large.risk?.fallback]).toEqual([TransferStatus.HELD, true]);
  });
});

describe("a transactions process killed between steps", () => {
  let h: TransactionsHarness;
  let child: ChildProcess | undefined;
  beforeAll(async () => {
    h = await startTransactionsHarness({ withTransactions: false });
  });
  afterAll(async () => {
    child?.kill("SIGKILL");
    await h.stop();
  });

  async function startProcess(port: number, failpoint: string): Promise<ChildProcess> {
    const proc = spawn(process.execPath, ["-r", "@swc-node/register", "services/transactions/src/main.ts"], {
      cwd: path.resolve(__dirname, "../../.."),
      env: { ...process.env, ...h.env, GRPC_PORT: String(port), FAILPOINT: failpoint, OTEL_SDK_DISABLED: "true", LOG_LEVEL: "silent" },
      stdio: "ignore",
    });
    await eventually(async () => checkHealth(`127.0.0.1:${port}`), 30_000);
    return proc;
  }

  it.each(["before-post", "applied-post"])("at %s: after a restart the transfer reaches one final state, in the ledger once", async (failpoint) => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 10_000n);
    const port = await freePort();
    child = await startProcess(port, failpoint);
    const exited = new Promise((resolve) => child!.once("exit", resolve));
    const client = createServiceClient(TransactionService, `127.0.0.1:${port}`, { defaultTimeoutMs: 10_000 });
    const request = transferRequest(a.id, b.id, 1_234n, { transferId: newId() });
    // The process dies (SIGKILL) mid-orchestration: the caller gets no answer.
    await expect(client.createTransfer(request)).rejects.toBeDefined();
    await exited;
    client.close();

    child = await startProcess(port, "");
    const restarted = createServiceClient(TransactionService, `127.0.0.1:${port}`, { defaultTimeoutMs: 10_000 });
    const posted = await eventually(async () => {
      const { transfer } = await restarted.getTransfer({ transferId: request.transferId });
      return transfer!.status === TransferStatus.POSTED ? transfer : undefined;
    }, 30_000);
    // The client retries with its key and gets the same transfer.
    expect((await restarted.createTransfer(request)).transfer).toEqual(posted);
    restarted.close();
    child.kill("SIGTERM");

    expect((await balanceOf(h, b.id)).posted).toBe(1_234n);
    const entries = await withSql(h, (sql) => sql`select count(*)::int as n from account.entries where transfer_id = ${request.transferId}`);
    expect(entries[0].n).toBe(2);
    // Risk decided once, and the posted transfer carries that decision.
    const assessments = await withSql(h, (sql) => sql`select id from risk.assessments where transfer_id = ${request.transferId}`);
    expect(assessments.map((a) => a.id)).toEqual([posted!.risk!.assessmentId]);
    const finals = await eventually(async () => {
      const events = (await readEvents(h.stream.name)).filter((e) => e.envelope.subjectId === request.transferId && e.envelope.type === "transfer_posted");
      return events.length > 0 ? events : undefined;
    });
    expect(finals).toHaveLength(1);
  }, 120_000);
});
