// Makes sure PostgreSQL and NATS answer at their configured addresses. Where
// one does not, starts a local one from the installed binaries with its data
// under .tally/, or says exactly what to install. Plain JavaScript, so it runs
// before anything is built.
"use strict";
const { spawn, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");

// Where private servers keep their data: one project folder, not versioned.
const dataDir = path.resolve(process.env.TALLY_DATA_DIR || path.join(__dirname, "..", ".tally"));
const log = (msg) => process.stderr.write(`[infra] ${msg}\n`);

const databaseUrl = process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/tally";
// The first server; nats.js, as the services use it, also takes a bare host:port.
const natsServer = (process.env.NATS_URL || "nats://127.0.0.1:4222").split(",")[0].trim();
const natsUrl = natsServer.includes("://") ? natsServer : `nats://${natsServer}`;

function reachable(host, port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** The INFO a NATS server greets every connection with (its first line), or undefined. */
function natsInfo(host, port, timeoutMs = 2_000) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let received = "";
    const done = (info) => {
      socket.destroy();
      resolve(info);
    };
    socket.setTimeout(timeoutMs, () => done(undefined));
    socket.once("error", () => done(undefined));
    socket.on("data", (chunk) => {
      received += chunk.toString("utf8");
      const end = received.indexOf("\r\n");
      if (end < 0) return;
      try {
        done(JSON.parse(received.slice(0, end).replace(/^INFO\s+/, "")));
      } catch {
        done(undefined);
      }
    });
  });
}

async function waitFor(host, port, what, timeoutMs = 30_000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await reachable(host, port)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} did not start listening on ${host}:${port} within ${timeoutMs / 1000}s`);
}

function which(name, extra = []) {
  const dirs = [...(process.env.PATH || "").split(":"), "/usr/sbin", "/usr/local/sbin", "/usr/local/bin", ...extra];
  for (const dir of dirs) {
    const file = path.join(dir, name);
    if (fs.existsSync(file)) return file;
  }
  return undefined;
}

const isLocal = (host) => ["127.0.0.1", "localhost", "::1", "[::1]"].includes(host);

/** Starts PostgreSQL: the machine's Debian cluster if it has one, else a private cluster under .tally/postgres. */
async function startPostgres(host, port) {
  const ctlcluster = which("pg_ctlcluster");
  const clusters = fs.existsSync("/etc/postgresql") ? fs.readdirSync("/etc/postgresql") : [];
  if (ctlcluster && clusters.length > 0 && port === 5432) {
    log(`starting the installed PostgreSQL ${clusters[0]} cluster`);
    spawnSync(ctlcluster, ["--skip-systemctl-redirect", clusters[0], "main", "start"], { stdio: "inherit" });
    await waitFor(host, port, "PostgreSQL");
    return undefined;
  }
  const server = localPostgres(path.join(dataDir, "postgres"), host, port);
  await server.start();
  return () => server.stop();
}

/**
 * A private PostgreSQL cluster with its data in `dir`, serving host:port:
 * initialised on its first start, and stopped and started again at will
 * (`stop("immediate")` is a crash: the next start recovers from the WAL).
 */
function localPostgres(dir, host, port, say = log) {
  const pgBin = fs.existsSync("/usr/lib/postgresql") ? fs.readdirSync("/usr/lib/postgresql").sort().reverse().map((v) => `/usr/lib/postgresql/${v}/bin`) : [];
  const initdb = which("initdb", pgBin);
  const pgCtl = which("pg_ctl", pgBin);
  if (!initdb || !pgCtl) {
    throw new Error("PostgreSQL is not reachable and not installed: install it (Debian: apt-get install postgresql) or set DATABASE_URL");
  }
  // PostgreSQL refuses to run as root: run it as the postgres user when we are root.
  const asUser = process.getuid && process.getuid() === 0 ? ["runuser", "-u", "postgres", "--"] : [];
  const run = (args, stdio = "inherit") => {
    const [cmd, ...rest] = [...asUser, ...args];
    return spawnSync(cmd, rest, { stdio }).status === 0;
  };
  const listen = host === "localhost" ? "127.0.0.1" : host;
  return {
    async start() {
      fs.mkdirSync(dir, { recursive: true });
      if (asUser.length) spawnSync("chown", ["-R", "postgres", dir]);
      if (!fs.existsSync(path.join(dir, "PG_VERSION"))) {
        say(`initialising a local PostgreSQL cluster in ${dir}`);
        if (!run([initdb, "-D", dir, "-U", "postgres", "--auth=trust", "-E", "UTF8"], say === log ? "inherit" : "ignore")) throw new Error(`initdb -D ${dir} failed`);
      }
      say(`starting local PostgreSQL on ${host}:${port}`);
      if (!run([pgCtl, "-D", dir, "-l", path.join(dir, "server.log"), "-o", `-p ${port} -k /tmp -c listen_addresses=${listen}`, "-w", "start"], "ignore")) {
        throw new Error(`PostgreSQL did not start on ${host}:${port}: see ${path.join(dir, "server.log")}`);
      }
    },
    /** "fast" disconnects clients and shuts down cleanly; "immediate" aborts, as a crash would. */
    stop(mode = "fast") {
      run([pgCtl, "-D", dir, "-m", mode, "-w", "stop"], "ignore");
    },
  };
}

/** Starts nats-server with JetStream, its store under .tally/nats. */
async function startNats(host, port) {
  const server = localNats(path.join(dataDir, "nats"), host, port);
  await server.start({ detached: true });
  return () => void server.stop();
}

/** A private nats-server with JetStream, its store in `dir`, serving host:port; stopped and started again at will. */
function localNats(dir, host, port, say = log) {
  const bin = which("nats-server");
  if (!bin) throw new Error("NATS is not reachable and nats-server is not installed: install it (Debian: apt-get install nats-server) or set NATS_URL");
  let child;
  return {
    /** `detached`: in its own process group, so a Ctrl-C meant for the caller does not stop it before the caller does. */
    async start({ detached = false } = {}) {
      fs.mkdirSync(dir, { recursive: true });
      say(`starting local nats-server with JetStream on ${host}:${port}`);
      child = spawn(bin, ["-a", host === "localhost" ? "127.0.0.1" : host, "-p", String(port), "-js", "-sd", dir], {
        stdio: ["ignore", "ignore", fs.openSync(path.join(dir, "server.log"), "a")],
        detached,
      });
      if (detached) child.unref();
      await waitFor(host, port, "nats-server");
    },
    /** Resolves once the server has exited; SIGKILL is a crash. */
    stop(signal = "SIGTERM") {
      const running = child;
      if (!running || running.exitCode !== null || running.signalCode !== null) return Promise.resolve();
      const exited = new Promise((resolve) => running.once("exit", resolve));
      try {
        process.kill(running.pid, signal);
      } catch {
        return Promise.resolve(); // already gone
      }
      return exited;
    },
  };
}

/** Creates the configured database when the server lacks it. */
async function ensureDatabase(url) {
  const postgres = require("postgres");
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, "")) || "postgres";
  const admin = new URL(url);
  admin.pathname = "/postgres";
  const sql = postgres(admin.toString(), { max: 1, onnotice: () => {} });
  try {
    const rows = await sql`select 1 from pg_database where datname = ${name}`.catch((err) => {
      // Debian's own cluster asks local TCP logins for a password (scram-sha-256), unlike this machine kind's.
      if (err.code === "28P01" || err.code === "28000") {
        throw new Error(
          `PostgreSQL at ${target.host} refused ${target.username || "postgres"} (${err.message}): put the password in DATABASE_URL (postgres://user:password@host:port/db), or let local logins in (pg_hba.conf: host all all 127.0.0.1/32 trust)`,
        );
      }
      throw err;
    });
    if (rows.length === 0) {
      await sql.unsafe(`create database "${name.replace(/"/g, '""')}"`).catch((err) => {
        if (err.code !== "42P04") throw err; // created meanwhile by someone else
      });
      log(`created database ${name}`);
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Returns a function that stops whatever this call had to start; on failure, stops it before throwing. */
async function ensureInfrastructure() {
  const stops = [];
  const stopAll = () => stops.reverse().forEach((stop) => stop());
  try {
    const pg = new URL(databaseUrl);
    const pgHost = pg.hostname || "127.0.0.1";
    const pgPort = Number(pg.port || 5432);
    if (!(await reachable(pgHost, pgPort))) {
      if (!isLocal(pgHost)) throw new Error(`PostgreSQL at ${pgHost}:${pgPort} is not reachable`);
      const stop = await startPostgres(pgHost, pgPort);
      if (stop) stops.push(stop);
    }
    await ensureDatabase(databaseUrl);
    const nats = new URL(natsUrl);
    const natsHost = nats.hostname || "127.0.0.1";
    const natsPort = Number(nats.port || 4222);
    if (!(await reachable(natsHost, natsPort))) {
      if (!isLocal(natsHost)) throw new Error(`NATS at ${natsHost}:${natsPort} is not reachable`);
      stops.push(await startNats(natsHost, natsPort));
    } else if ((await natsInfo(natsHost, natsPort))?.jetstream !== true) {
      // Debian's nats-server package starts one so, on 4222: every service would fail on its stream.
      throw new Error(
        `NATS at ${natsHost}:${natsPort} runs without JetStream, which Tally needs: turn it on in its configuration (jetstream {}), ` +
          `stop it (systemctl disable --now nats-server) so that a local one is started with JetStream, or set NATS_URL to one that has it`,
      );
    }
  } catch (err) {
    stopAll();
    throw err;
  }
  return stopAll;
}

/**
 * Calls `stop` once this process's parent is gone. A SIGTERM sent to `npm start` or `npm test`
 * alone (as a supervisor sends it) ends npm and the shell it ran the script in, which does not
 * pass it on: the script would run on, orphaned, holding its ports.
 */
function stopWhenOrphaned(stop) {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    stop();
  }, 500);
  timer.unref();
}

module.exports = { ensureInfrastructure, localNats, localPostgres, reachable, stopWhenOrphaned };
