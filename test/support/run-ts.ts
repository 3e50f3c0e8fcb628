import { execFile } from "node:child_process";
import path from "node:path";

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

const ROOT = path.resolve(__dirname, "../..");

/** A TypeScript entry point run to its end as a process, through swc as the npm scripts run it, from the project folder. */
export function runTs(file: string, args: string[] = [], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<Ran> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ["-r", "@swc-node/register", file, ...args], { cwd: ROOT, env: { ...process.env, ...env }, timeout: timeoutMs }, (_err, stdout, stderr) =>
      resolve({ code: child.exitCode, stdout, stderr }),
    );
  });
}
