#!/usr/bin/env node
// `npm start`: makes sure PostgreSQL and NATS answer (starting local ones where
// they do not), runs each service as its own process with its logs prefixed,
// waits until all report SERVING, and prints where they are. Ctrl-C stops
// everything, including whatever infrastructure it had to start.
// Runs the build in dist/ (npm start builds first).
"use strict";
const { spawn } = require("node:child_process");
const path = require("node:path");
const readline = require("node:readline");
const { ensureInfrastructure, stopWhenOrphaned } = require("./infra");

const root = path.resolve(__dirname, "..");
/** A whole-number setting of this script, refused by name when out of range. */
function wholeNumber(name, fallback, min, max) {
  const value = Number(process.env[name] || fallback);
  if (Number.isInteger(value) && value >= min && value <= max) return value;
  process.stderr.write(`start: ${name} must be a whole number from ${min} to ${max}, not ${JSON.stringify(process.env[name])}\n`);
  process.exit(2);
}
const replicas = wholeNumber("REPLICAS", 1, 1, 9);

/** The processes, each with its first port and the first port of its /metrics. */
const SERVICES = [
  { name: "account", main: "dist/services/account/src/main.js", port: 50051, metricsPort: 9465, portVar: "GRPC_PORT", urlVar: "ACCOUNT_SERVICE_URL" },
  { name: "transactions", main: "dist/services/transactions/src/main.js", port: 50052, metricsPort: 9466, portVar: "GRPC_PORT", urlVar: "TRANSACTIONS_SERVICE_URL" },
  { name: "risk", main: "dist/services/risk/src/main.js", port: 50053, metricsPort: 9467, portVar: "GRPC_PORT", urlVar: "RISK_SERVICE_URL" },
  { name: "gateway", main: "dist/gateway/src/main.js", port: 8080, metricsPort: 9464, portVar: "HTTP_PORT", http: true },
];

// Moves every port up, to run a second system beside the first (or beside anything on 8080), as far
// as the last replica's highest port allows.
const portOffset = wholeNumber("PORT_OFFSET", 0, 0, 65_535 - (Math.max(...SERVICES.map((s) => s.port)) + (replicas - 1) * 100));

const children = [];
let stopping = false;

// Replica r of each process listens 100·r above the first one's ports.
const portOf = (service, replica) => service.port + replica * 100 + portOffset;
const metricsPortOf = (service, replica) => service.metricsPort + replica * 100 + portOffset;

// Every process that calls a service is told all its replicas' addresses, and balances over them.
const serviceUrls = Object.fromEntries(
  SERVICES.filter((s) => s.urlVar).map((s) => [s.urlVar, Array.from({ length: replicas }, (_, r) => `127.0.0.1:${portOf(s, r)}`).join(",")]),
);

function run(service, replica) {
  const port = portOf(service, replica);
  const label = replicas > 1 ? `${service.name}-${replica + 1}` : service.name;
  const child = spawn(process.execPath, [path.join(root, service.main)], {
    cwd: root,
    env: { ...serviceUrls, ...process.env, [service.portVar]: String(port), METRICS_PORT: String(metricsPortOf(service, replica)), SERVICE_INSTANCE_ID: label },
    stdio: ["ignore", "pipe", "pipe"],
    // Out of the terminal's process group: Ctrl-C reaches only this script, which sends each one SIGTERM once.
    detached: true,
  });
  for (const stream of [child.stdout, child.stderr]) {
    readline.createInterface({ input: stream }).on("line", (line) => process.stdout.write(`${label.padEnd(12)} | ${line}\n`));
  }
  child.on("exit", (code, signal) => {
    if (!stopping) {
      process.stderr.write(`${label} exited (${signal || code}); stopping everything\n`);
      stop(1);
    }
  });
  children.push(child);
  return { label, target: `127.0.0.1:${port}`, metrics: `http://127.0.0.1:${metricsPortOf(service, replica)}/metrics`, http: service.http === true };
}

/** Every service reports SERVING on grpc.health.v1, and the gateway is ready: it reaches a replica of each. */
async function waitHealthy(instances) {
  const { checkHealth } = require(path.join(root, "dist/platform/grpc/health-check"));
  const { answersOk } = require(path.join(root, "dist/platform/http-probe"));
  const ready = (target) => answersOk(`http://${target}/readyz`, 2000);
  const until = Date.now() + 60_000;
  for (const instance of instances) {
    const healthy = () => (instance.http ? ready(instance.target) : checkHealth(instance.target));
    while (!(await healthy())) {
      if (Date.now() > until) throw new Error(`${instance.label} did not become healthy within 60s`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

let stopInfrastructure = () => {};
let infrastructureStarting = true;
const running = (child) => child.exitCode === null && child.signalCode === null;

/** SIGTERM to every process, each finishing its in-flight work; after 20 s, SIGKILL to any left. */
function stop(code) {
  if (stopping) return;
  stopping = true;
  // Still starting PostgreSQL or NATS: main() stops them and exits once that is done.
  if (infrastructureStarting) return;
  let pending = children.filter(running).length;
  const done = () => {
    stopInfrastructure();
    process.stdout.write("Tally stopped.\n");
    process.exit(code);
  };
  if (pending === 0) return done();
  for (const child of children.filter(running)) {
    child.on("exit", () => --pending === 0 && done());
    child.kill("SIGTERM");
  }
  setTimeout(() => {
    children.filter(running).forEach((child) => child.kill("SIGKILL"));
    done();
  }, 20_000).unref();
}

// However this script ends, its services do not outlive it.
process.on("exit", () => children.filter(running).forEach((c) => c.kill("SIGTERM")));

async function main() {
  // From the start: a Ctrl-C while the infrastructure starts still stops what was started.
  process.on("SIGINT", () => stop(0));
  process.on("SIGTERM", () => stop(0));
  stopWhenOrphaned(() => stop(0));
  try {
    stopInfrastructure = await ensureInfrastructure();
  } finally {
    infrastructureStarting = false;
  }
  if (stopping) {
    stopping = false;
    return stop(0);
  }
  const instances = SERVICES.flatMap((s) => Array.from({ length: replicas }, (_, r) => run(s, r)));
  await waitHealthy(instances);
  const gateway = `http://127.0.0.1:${portOf(SERVICES[3], 0)}`;
  process.stdout.write(
    [
      "",
      "Tally is up.",
      ...instances.map((i) => `  ${i.label.padEnd(12)} ${(i.http ? "gRPC, gRPC-Web, Connect, REST JSON" : "gRPC (internal)").padEnd(34)} ${i.target.padEnd(16)} metrics ${i.metrics}`),
      "",
      `Traces go over OTLP to ${process.env.OTEL_EXPORTER_OTLP_ENDPOINT || "http://localhost:4318"} (\`docker compose up -d jaeger\`, then http://localhost:16686);`,
      "every response names its trace in the X-Trace-Id header.",
      "",
      ...(await tokenLines()),
      "Take the guided tour, or try it through the gateway:",
      `  ${gateway === "http://127.0.0.1:8080" ? "" : `TALLY_URL=${gateway} `}npm run demo`,
      `  curl -s -H "Authorization: Bearer $TELLER_TOKEN" ${gateway}/v1/system-accounts/USD`,
      `  curl -s -H "Authorization: Bearer $TELLER_TOKEN" -H 'content-type: application/json' -d '{"currency":"USD"}' \\`,
      `    ${gateway}/tally.account.v1.AccountService/GetSystemAccount`,
      `  npx buf curl --schema proto --protocol grpc --http2-prior-knowledge -H "Authorization: Bearer $TELLER_TOKEN" \\`,
      `    -d '{"currency":"USD"}' ${gateway}/tally.account.v1.AccountService/GetSystemAccount`,
      "",
      "Ctrl-C stops everything.",
      "",
    ].join("\n"),
  );
}

/** A ready-to-use development token per role, as shell exports; none when tokens come from an identity provider. */
async function tokenLines() {
  const { developmentToken } = require(path.join(root, "dist/gateway/src/auth/tokens"));
  const { gatewayConfig } = require(path.join(root, "dist/gateway/src/config"));
  const mint = (role, customerId) => developmentToken(gatewayConfig(process.env), role, { customerId, ttlSeconds: 12 * 3600 });
  const lines = ["Development tokens, valid 12 hours (paste into your shell; `npm run token -- <role>` mints more):"];
  try {
    for (const role of ["teller", "analyst", "admin", "service"]) lines.push(`  export ${role.toUpperCase()}_TOKEN=${await mint(role)}`);
    lines.push(`  export CUSTOMER_TOKEN=${await mint("customer", "demo-customer")}   # customer demo-customer`);
  } catch (err) {
    return [`No development tokens: ${err.message}.`, ""];
  }
  return [...lines, ""];
}

main().catch((err) => {
  process.stderr.write(`start: ${err.message}\n`);
  stopping = false;
  stop(1);
});
