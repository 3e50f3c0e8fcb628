import pino from "pino";

export interface RecordedLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A logger that keeps what it writes, for a test to check what was reported. */
export function recordingLogger() {
  const lines: RecordedLine[] = [];
  const log = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line) as RecordedLine) });
  return { log, lines };
}
