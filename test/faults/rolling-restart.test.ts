import { startCluster, type Cluster } from "../support/cluster";
import { KIND, startOtlpReceiver, type OtlpReceiver } from "../support/otlp";
import { BankWorkload, Journal, openBank, report, settleAndAudit, type Bank, type Check } from "./bank";

/**
 * Graceful shutdown, and a rolling restart under load: every replica of every
 * service and gateway in turn gets SIGTERM, must finish what it has in hand,
 * stop consuming, flush its spans and exit 0, and comes back, while clients
 * keep moving money. Nothing acknowledged may be lost, and no request that
 * reached a process may be cut off: the only failures a client may see are
 * connections refused by a gateway that has stopped listening.
 */
const SEED = Number(process.env.FAULTS_SEED ?? Date.now() % 1_000_000);
const MIN_READY_MS = 3_000;

let collector: OtlpReceiver;
let cluster: Cluster;
let bank: Bank;

beforeAll(async () => {
  collector = await startOtlpReceiver();
  cluster = await startCluster({
    replicas: 2,
    env: {
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint,
      // Spans wait in memory until the process stops: whatever reaches the collector from a stopped process, its shutdown sent.
      OTEL_BSP_SCHEDULE_DELAY: "3600000",
      OTEL_BSP_MAX_QUEUE_SIZE: "1000000",
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "1000000",
    },
  });
  bank = await openBank(cluster.gatewayUrls, await cluster.token("teller"), await cluster.token("analyst"));
}, 240_000);

afterAll(async () => {
  await cluster?.stop();
  await collector?.close();
}, 90_000);

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

// What must stop before what: serving first, telemetry last, the broker and the pool after everything that uses them.
const ORDER = ["grpc server", "gateway server", "recovery", "ledger event consumer", "outbox relay", "nats", "database", "telemetry"];

it("restarts every replica in turn under load, each finishing its work and flushing its spans, and loses nothing", async () => {
  const workload = new BankWorkload(bank, cluster.gatewayUrls, await cluster.token("teller"), SEED);
  const journal = new Journal();
  const shutdowns: Check[] = [];
  workload.start();
  await pause(3_000);
  for (const replica of cluster.replicas) {
    const before = workload.acked;
    const spansBefore = collector.spans.filter((s) => s.instance === replica.name).length;
    const logged = replica.logs().length;
    journal.note(`SIGTERM ${replica.name}`);
    const code = await replica.exit("SIGTERM");
    const spans = collector.spans.filter((s) => s.instance === replica.name);
    const steps = replica
      .logs()
      .slice(logged)
      .filter((l) => l.msg === "shutdown step done")
      .map((l) => String(l.step));
    const timedOut = replica.logs().slice(logged).filter((l) => l.msg === "shutdown step timed out" || l.msg === "shutdown step failed");
    const known = steps.filter((s) => ORDER.includes(s));
    const inOrder = known.every((s, i) => i === 0 || ORDER.indexOf(known[i - 1]) < ORDER.indexOf(s));
    journal.note(`  exited ${code} after stopping ${steps.join(" → ")}; ${spans.length} spans flushed`);
    shutdowns.push({
      name: `${replica.name} stops gracefully on SIGTERM`,
      ok: code === 0 && timedOut.length === 0 && inOrder && steps[steps.length - 1] === "telemetry" && spansBefore === 0 && spans.some((s) => s.kind === KIND.SERVER),
      detail: `exit ${code}; steps ${steps.join(" → ")}${timedOut.length ? `; ${timedOut.length} timed out or failed` : ""}; ${spansBefore} spans exported before, ${spans.length} (${spans.filter((s) => s.kind === KIND.SERVER).length} server spans) by its shutdown`,
    });
    await replica.restart();
    journal.note(`  ${replica.name} serving again; ${workload.acked - before} transfers acknowledged meanwhile`);
    // As an orchestrator leaves a new replica a moment (minReadySeconds) for its callers to connect before stopping the next.
    await pause(MIN_READY_MS);
  }
  await pause(2_000);
  const stats = await workload.stop();
  journal.note("workload stopped");

  const cutOff = Object.entries(stats.errors).filter(([code]) => code !== "no answer (ECONNREFUSED)");
  const checks = [
    ...shutdowns,
    {
      name: "no request that reached a process was cut off by its shutdown",
      ok: cutOff.length === 0,
      detail: cutOff.length ? cutOff.map(([code, n]) => `${n} × ${code}: ${(stats.errorSamples[code] ?? []).join(" | ")}`).join("; ") : `errors met and retried past: ${JSON.stringify(stats.errors)}`,
    },
    ...(await settleAndAudit(cluster, bank, stats, journal)),
  ];
  process.stdout.write(report(`rolling restart (FAULTS_SEED=${SEED})`, bank, stats, journal, checks, cluster));
  expect(checks.filter((c) => !c.ok)).toEqual([]);
  expect(workload.acked).toBeGreaterThan(100);
}, 600_000);
