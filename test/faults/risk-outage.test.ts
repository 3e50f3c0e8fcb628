import { TransferStatus } from "../../gen/tally/transactions/v1/transfer_pb";
import { percentile } from "../../scripts/bench-support";
import { eventually } from "../support/events";
import { startCluster, type Cluster } from "../support/cluster";
import { BankWorkload, Journal, openBank, report, settleAndAudit, type Attempt, type Bank, type Check } from "./bank";

/**
 * Deadlines and breakers, measured: risk first hangs (SIGSTOP), then is
 * gone (SIGKILL), then comes back. Throughout, transfers are answered by the
 * fallback policy (hold the funds) instead of waiting on risk; each
 * transactions replica's breaker opens, half-opens to probe, and closes once
 * risk answers; the held transfers are then assessed and posted. It prints
 * the latencies of each phase and how long recovery took.
 */
const SEED = Number(process.env.FAULTS_SEED ?? Date.now() % 1_000_000);
// Longer than the default (250 ms), so that a machine busy with other tests never makes risk miss it while it answers.
const RISK_DEADLINE_MS = 1_000;
const BREAKER_COOLDOWN_MS = 2_000;
const PHASE_MS = 6_000;
const SLACK_MS = 300;
const WARM_UP_MS = 4_000;
const DECIDED_SHARE = 0.95;
// A breaker probes once per cool-down; a probe that meets a risk replica still warming up fails and waits another.
// Both replicas come back cold: two probes may fail before a third finds one warm, and the first call that
// follows, carrying every assessment that waited, may meet a cold replica too. Four cool-downs leave room for it.
const SETTLED_AFTER_COOLDOWNS = 4;

let cluster: Cluster;
let bank: Bank;

beforeAll(async () => {
  cluster = await startCluster({
    replicas: 2,
    env: { RISK_DEADLINE_MS: String(RISK_DEADLINE_MS), RISK_BREAKER_FAILURES: "5", RISK_BREAKER_COOLDOWN_MS: String(BREAKER_COOLDOWN_MS), RISK_FALLBACK: "hold" },
  });
  bank = await openBank(cluster.gatewayUrls, await cluster.token("teller"), await cluster.token("analyst"));
}, 240_000);

afterAll(() => cluster?.stop(), 90_000);

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The transfers sent within a phase, and how they were answered. */
function summary(name: string, attempts: Attempt[]): string {
  const ms = attempts.map((a) => a.ms ?? NaN).sort((a, b) => a - b);
  const fallback = attempts.filter((a) => a.fallback).length;
  return `${name}: ${attempts.length} transfers, ${fallback} decided by the fallback policy; latency p50 ${percentile(ms, 50)} ms, p95 ${percentile(ms, 95)} ms, max ${ms[ms.length - 1]} ms`;
}

it("holds transfers by the fallback policy while risk hangs or is down, opens and closes its breaker, and settles them once risk is back", async () => {
  const workload = new BankWorkload(bank, cluster.gatewayUrls, await cluster.token("teller"), SEED, { transferWorkers: 2, readers: 0 });
  const journal = new Journal();
  const risk = cluster.of("risk");
  const windows: Record<string, [number, number]> = {};
  const phase = async (name: string, ms: number) => {
    const from = Date.now();
    journal.note(name);
    await pause(ms);
    windows[name] = [from, Date.now()];
  };
  const within = (name: string) => workload.stats.attempts.filter((a) => a.sentAt >= windows[name][0] && a.sentAt < windows[name][1]);

  workload.start();
  // Each replica's first calls load code and open connections: not what this test measures.
  await pause(WARM_UP_MS);
  await phase("risk answers", PHASE_MS);
  risk.forEach((r) => r.signal("SIGSTOP"));
  await phase("risk hangs (SIGSTOP on both replicas)", PHASE_MS);
  await Promise.all(risk.map((r) => r.exit("SIGKILL")));
  await phase("risk is down (both replicas killed)", PHASE_MS);
  journal.note("risk restarting");
  await Promise.all(risk.map((r) => r.restart()));
  const readyAt = Date.now();
  journal.note("risk serving again");
  const firstDecided = await eventually(async () => workload.stats.attempts.find((a) => a.sentAt >= readyAt && a.outcome === "acked" && !a.fallback), 60_000);
  const recoveryMs = firstDecided.sentAt + firstDecided.ms! - readyAt;
  journal.note(`first transfer decided by risk again ${recoveryMs} ms after it was serving (breaker cool-down ${BREAKER_COOLDOWN_MS} ms)`);
  await phase("risk answers again", PHASE_MS + 2_000);
  const stats = await workload.stop();
  journal.note("workload stopped");

  const names = Object.keys(windows);
  for (const name of names) journal.note(summary(name, within(name)));
  const [before, hanging, down, after] = names.map(within);
  const settled = after.filter((a) => a.sentAt >= readyAt + SETTLED_AFTER_COOLDOWNS * BREAKER_COOLDOWN_MS);
  const lastFallbackMs = Math.max(0, ...after.filter((a) => a.fallback).map((a) => a.sentAt - readyAt));
  const heldByPolicy = (a: Attempt) => a.outcome === "acked" && a.fallback && (a.status === TransferStatus.HELD || a.status === TransferStatus.FAILED);
  const decided = (a: Attempt) => a.outcome === "acked" && !a.fallback;
  const breakers = cluster.of("transactions").map((t) => ({
    name: t.name,
    states: t
      .logs()
      .filter((l) => l.msg === "risk circuit breaker changed state")
      .map((l) => String(l.breaker)),
  }));
  const checks: Check[] = [
    {
      // A call that misses the deadline falls back even while risk is up (a slow disk, a busy machine): what matters is that risk decides the rest.
      name: `while risk answers, it decides the transfers (at least ${DECIDED_SHARE * 100}%: a call that misses the deadline falls back)`,
      ok: before.length > 0 && before.filter(decided).length >= DECIDED_SHARE * before.length,
      detail: `${summary("before", before)}; fell back: ${before.filter((a) => !decided(a)).map((a) => `+${a.sentAt - windows["risk answers"][0]} ms`).join(", ") || "none"}`,
    },
    {
      name: "while risk hangs, every transfer is answered, held by the fallback policy",
      ok: hanging.length > 0 && hanging.every(heldByPolicy),
      detail: `${hanging.filter(heldByPolicy).length} of ${hanging.length}; risk deadline ${RISK_DEADLINE_MS} ms`,
    },
    {
      // Its own work aside (the slowest answer while risk answered), no transfer waits on risk longer than the deadline.
      name: "while risk hangs, no transfer waits on it longer than its deadline",
      ok: Math.max(...hanging.map((a) => a.ms!)) <= RISK_DEADLINE_MS + Math.max(...before.map((a) => a.ms!)) + SLACK_MS,
      detail: `slowest answer ${Math.max(...hanging.map((a) => a.ms!))} ms; deadline ${RISK_DEADLINE_MS} ms + slowest answer while risk answered ${Math.max(...before.map((a) => a.ms!))} ms + ${SLACK_MS} ms`,
    },
    { name: "while risk is down, every transfer is answered, held by the fallback policy", ok: down.length > 0 && down.every(heldByPolicy), detail: `${down.filter(heldByPolicy).length} of ${down.length}` },
    {
      // Each replica's breaker lets risk in again at its next probe, so transfers may still fall back for about a cool-down.
      name: `once risk is back, every breaker lets it decide again within a few cool-downs (${SETTLED_AFTER_COOLDOWNS} × ${BREAKER_COOLDOWN_MS} ms; at least ${DECIDED_SHARE * 100}%)`,
      ok: settled.length > 0 && settled.filter(decided).length >= DECIDED_SHARE * settled.length,
      detail: `first decision ${recoveryMs} ms after risk was serving; ${after.filter((a) => a.fallback).length} of ${after.length} transfers fell back meanwhile, the last sent ${lastFallbackMs} ms after; ${settled.filter(decided).length} of ${settled.length} decided by risk after that`,
    },
    ...breakers.map((b) => ({
      name: `${b.name}'s risk breaker opens, half-opens to probe, and closes once risk answers`,
      ok: b.states.indexOf("Open") >= 0 && b.states.indexOf("HalfOpen") > b.states.indexOf("Open") && b.states[b.states.length - 1] === "Closed",
      detail: b.states.join(" → "),
    })),
    ...(await settleAndAudit(cluster, bank, stats, journal)),
  ];
  process.stdout.write(report(`risk outage (FAULTS_SEED=${SEED})`, bank, stats, journal, checks, cluster));
  expect(checks.filter((c) => !c.ok)).toEqual([]);
}, 600_000);
