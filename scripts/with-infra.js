#!/usr/bin/env node
// Runs a command with PostgreSQL and NATS available (see infra.js), then stops
// whatever had to be started for it. Usage: node scripts/with-infra.js <command> [args…]
"use strict";
const { spawn } = require("node:child_process");
const { ensureInfrastructure, stopWhenOrphaned } = require("./infra");

async function main() {
  const [command, ...args] = process.argv.slice(2);
  if (!command) throw new Error("usage: with-infra.js <command> [args…]");
  const stopInfrastructure = await ensureInfrastructure();
  // In a process group of its own, so that a signal reaches everything it runs (a shell passes
  // none on to its children); this process hands on the signals it gets, Ctrl-C's included.
  const child = spawn(command, args, { stdio: "inherit", detached: true });
  const signal = (name) => {
    try {
      process.kill(-child.pid, name);
    } catch {
      // gone already
    }
  };
  process.on("SIGINT", () => signal("SIGINT"));
  process.on("SIGTERM", () => signal("SIGTERM"));
  stopWhenOrphaned(() => signal("SIGTERM"));
  child.on("exit", (code, exitSignal) => {
    stopInfrastructure();
    process.exit(code ?? (exitSignal ? 1 : 0));
  });
}

main().catch((err) => {
  process.stderr.write(`[infra] ${err.message}\n`);
  process.exit(1);
});
