import { readdirSync, readFileSync } from "node:fs";

/**
 * CPU time used by processes, from /proc (Linux): user + system seconds of
 * one process, or of every process with a given command name (PostgreSQL
 * runs one per connection), each with its children that have ended: a
 * PostgreSQL backend that exits (its connection closed) still counts, in the
 * postmaster that reaped it, so the sum never falls. Elsewhere it reads as 0.
 */
const TICKS_PER_SECOND = 100;

function statOf(pid: number): { comm: string; seconds: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command is in parentheses and may hold spaces; the fields after it are space-separated.
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime, stime, cutime and cstime are fields 14 to 17 of the whole line, 12 to 15 after the command.
    const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    return { comm, seconds: ticks / TICKS_PER_SECOND };
  } catch {
    return undefined;
  }
}

export const cpuSecondsOf = (pid: number): number => statOf(pid)?.seconds ?? 0;

/** Every process named `comm` (e.g. "postgres", "nats-server"), together. */
export function cpuSecondsOfCommand(comm: string): number {
  let pids: string[] = [];
  try {
    pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  } catch {
    return 0;
  }
  return pids.reduce((sum, pid) => {
    const stat = statOf(Number(pid));
    return stat?.comm === comm ? sum + stat.seconds : sum;
  }, 0);
}

/** CPU seconds of every process of a running system: each replica, PostgreSQL and NATS. */
export function systemCpuSeconds(replicas: readonly { name: string; pid: number }[]): Record<string, number> {
  return {
    ...Object.fromEntries(replicas.map((r) => [r.name, cpuSecondsOf(r.pid)])),
    postgresql: cpuSecondsOfCommand("postgres"),
    "nats-server": cpuSecondsOfCommand("nats-server"),
  };
}
