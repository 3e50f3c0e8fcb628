import { context, propagation, trace } from "@opentelemetry/api";
import { node as tracing } from "@opentelemetry/sdk-node";

/**
 * Records the spans a suite makes, in memory, with a real tracer provider and
 * async context: register it for the suite, unregister after.
 */
export function recordSpans(): tracing.InMemorySpanExporter {
  const exporter = new tracing.InMemorySpanExporter();
  const provider = new tracing.NodeTracerProvider({ spanProcessors: [new tracing.SimpleSpanProcessor(exporter)] });
  beforeAll(() => provider.register());
  afterAll(async () => {
    await provider.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  });
  return exporter;
}
