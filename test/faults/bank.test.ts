import { startCluster, type Cluster, type Replica } from "../support/cluster";
import { BankWorkload, Journal, openBank, report, settleAndAudit, type Bank } from "./bank";

/**
 * The bank test: two replicas of every service and of the gateway, clients
 * moving money and reading balances through both gateways, while each
 * service in turn is killed and restarted, paused and resumed, and NATS and
 * PostgreSQL crash and come back. Afterwards everything stored is audited
 * against what the clients were told. FAULTS_SEED replays a run's traffic.
 */
const SEED = Number(process.env.FAULTS_SEED ?? Date.now() % 1_000_000);
// Normal operation between two faults, so each fault hits a system that has recovered from the last.
const CALM_MS = 4_000;
const DOWN_MS = 3_000;

let cluster: Cluster;
let bank: Bank;

beforeAll(async () => {
  cluster = await startCluster({ replicas: 2, env: { RECOVERY_AFTER_MS: "2000", DRIVE_LEASE_MS: "5000" } });
  bank = await openBank(cluster.gatewayUrls, await cluster.token("teller"), await cluster.token("analyst"));
}, 240_000);

afterAll(() => cluster?.stop(), 90_000);

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function killAndRestart(replica: Replica): Promise<void> {
  await replica.exit("SIGKILL");
  await pause(DOWN_MS);
  await replica.restart();
}

async function pauseFor(replica: Replica, ms: number): Promise<void> {
  replica.signal("SIGSTOP");
  await pause(ms);
  replica.signal("SIGCONT");
}

it("conserves money and loses nothing acknowledged while processes, NATS and PostgreSQL fail", async () => {
  const service = (name: "account" | "transactions" | "risk" | "gateway", i: number) => cluster.of(name)[i];
  const faults: [string, () => Promise<void>][] = [
    ["SIGKILL account-1, restarted 3 s later", () => killAndRestart(service("account", 0))],
    ["SIGKILL transactions-1, restarted 3 s later", () => killAndRestart(service("transactions", 0))],
    ["SIGKILL risk-1, restarted 3 s later", () => killAndRestart(service("risk", 0))],
    ["SIGKILL gateway-1, restarted 3 s later", () => killAndRestart(service("gateway", 0))],
    ["SIGSTOP account-2 for 4 s, then SIGCONT", () => pauseFor(service("account", 1), 4_000)],
    ["SIGSTOP transactions-2 for 4 s, then SIGCONT", () => pauseFor(service("transactions", 1), 4_000)],
    [
      "NATS crashes (SIGKILL) and is back 3 s later",
      async () => {
        await cluster.nats.stop("SIGKILL");
        await pause(DOWN_MS);
        await cluster.nats.start();
      },
    ],
    [
      "PostgreSQL crashes (immediate shutdown) and is back 3 s later, recovering from its WAL",
      async () => {
        cluster.postgres.stop("immediate");
        await pause(DOWN_MS);
        await cluster.postgres.start();
      },
    ],
    [
      "SIGKILL both transactions replicas at once, restarted 3 s later",
      async () => {
        await Promise.all(cluster.of("transactions").map((r) => r.exit("SIGKILL")));
        await pause(DOWN_MS);
        await Promise.all(cluster.of("transactions").map((r) => r.restart()));
      },
    ],
  ];

  const workload = new BankWorkload(bank, cluster.gatewayUrls, await cluster.token("teller"), SEED);
  const journal = new Journal();
  workload.start();
  for (const [name, inject] of faults) {
    await pause(CALM_MS);
    const before = workload.acked;
    journal.note(name);
    await inject();
    journal.note(`  recovered; ${workload.acked - before} transfers acknowledged meanwhile`);
  }
  // Long enough for the last fault's breakers and client backoffs to pass, so every replica takes work again.
  await pause(2 * CALM_MS);
  const stats = await workload.stop();
  journal.note("workload stopped");

  const checks = await settleAndAudit(cluster, bank, stats, journal);
  process.stdout.write(report(`bank test (FAULTS_SEED=${SEED})`, bank, stats, journal, checks, cluster));
  expect(checks.filter((c) => !c.ok)).toEqual([]);
  expect(workload.acked).toBeGreaterThan(100);
}, 600_000);
