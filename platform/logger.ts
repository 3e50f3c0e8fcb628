import { trace } from "@opentelemetry/api";
import pino, { type Logger } from "pino";

export type { Logger };

/** JSON logs; every line written inside a traced call carries its trace and span ids. */
export function createLogger(service: string, level = "info"): Logger {
  return pino({
    level,
    base: { service, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    mixin() {
      const span = trace.getActiveSpan();
      if (!span) return {};
      const { traceId, spanId } = span.spanContext();
      return { trace_id: traceId, span_id: spanId };
    },
  });
}
