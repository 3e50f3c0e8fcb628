#!/usr/bin/env node
// Runs a command with PostgreSQL and NATS available (see infra.js), then stops
// whatever had to be started for it. Usage: node scripts/with-infra.js <command> [args…]
"use strict";
const { spawn } = require("node:child_process");
const { ensureInfrastructure } = require("./infra");

async function main() {
  const [command, ...args] = process.argv.slice(2);
  if (!command) throw new Error("usage: with-infra.js <command> [args…]");
  const stopInfrastructure = await ensureInfrastructure();
  const child = spawn(command, args, { stdio: "inherit", shell: process.platform === "win32" });
  // Ctrl-C already reaches the command through the terminal; pass on only what is sent to us alone.
  process.on("SIGINT", () => {});
  process.on("SIGTERM", () => child.kill("SIGTERM"));
  child.on("exit", (code, signal) => {
    stopInfrastructure();
    process.exit(code ?? (signal ? 1 : 0));
  });
}

main().catch((err) => {
  process.stderr.write(`[infra] ${err.message}\n`);
  process.exit(1);
});
