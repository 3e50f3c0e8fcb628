/**
 * npm run profile:summary -- DIR: where each process's CPU went, from the V8 CPU profiles that
 * TALLY_CPU_PROFILE_DIR=DIR had every process write (say, during npm run bench:waterfall). For
 * each profile: the process (its entry point), the time it was busy, and that time by package
 * (a dependency, a Node module, or a folder of Tally's own) and by function. Busy time is wall
 * time the profiler found the process not idle: on a machine with fewer cores than busy
 * processes it includes time spent waiting for a core, mostly in system calls (writeBuffer).
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { printColumns, round2 } from "./bench-support";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const TOP = 15;

/** Where a frame's code lives: a package, a Node module, one of Tally's folders, or V8's own (GC, idle). */
function placeOf({ functionName, url }: ProfileNode["callFrame"]): string {
  const dependency = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dependency) return dependency[1];
  if (url.startsWith("node:")) return url;
  const own = url.indexOf("/services/") >= 0 || url.indexOf("/platform/") >= 0 || url.indexOf("/gateway/") >= 0;
  if (own) return `tally ${url.replace(/^.*?\/((?:services\/[^/]+|platform|gateway)\/[^/]+).*$/, "$1")}`;
  return functionName ? `(${functionName.replace(/^\((.*)\)$/, "$1")})` : "(native)";
}

function summarize(file: string): void {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const places = new Map<string, number>();
  const functions = new Map<string, number>();
  let busy = 0;
  for (const [id, micros] of self) {
    const frame = byId.get(id)!.callFrame;
    if (frame.functionName === "(idle)") continue;
    busy += micros;
    const place = placeOf(frame);
    places.set(place, (places.get(place) ?? 0) + micros);
    const fn = `${frame.functionName || "(anonymous)"} ${path.basename(frame.url)}${frame.url ? `:${frame.lineNumber + 1}` : ""}`;
    functions.set(fn, (functions.get(fn) ?? 0) + micros);
  }
  const entry = profile.nodes.map((n) => n.callFrame.url).find((url) => /\/(services\/[^/]+|gateway)\/src\/main\.ts$/.test(url));
  const name = entry ? entry.replace(/^.*\/(services\/[^/]+|gateway)\/src\/main\.ts$/, "$1") : path.basename(file);
  const share = (micros: number) => `${round2((100 * micros) / busy).toFixed(1)}%`;
  const top = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, TOP);
  process.stdout.write(`\n${name}: busy ${round2(busy / 1e6)} s\n`);
  printColumns(["share", "package"], top(places).map(([place, micros]) => [share(micros), place]));
  process.stdout.write("\n");
  printColumns(["share", "function"], top(functions).map(([fn, micros]) => [share(micros), fn]));
}

const dir = process.argv[2];
if (!dir) {
  process.stderr.write("usage: npm run profile:summary -- DIR (the TALLY_CPU_PROFILE_DIR a run wrote to)\n");
  process.exit(2);
}
const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")).sort();
if (files.length === 0) process.stderr.write(`no .cpuprofile files in ${dir}\n`);
for (const file of files) summarize(path.join(dir, file));
