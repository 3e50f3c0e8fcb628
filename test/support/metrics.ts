import { metrics, type Attributes } from "@opentelemetry/api";
import { AggregationTemporality, DataPointType, MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";

/** A reader that collects only when asked. */
class OnDemandReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

export interface RecordedMetrics {
  /** A counter's sum, a gauge's value, or a histogram's count, over the points whose attributes include `attributes`. */
  value(name: string, attributes?: Attributes): Promise<number | undefined>;
  /** value() of several metrics from one collection, so they describe the same moment. */
  values(names: string[], attributes?: Attributes): Promise<(number | undefined)[]>;
}

/**
 * Records the metrics a suite makes with a real meter provider, registered
 * for the suite: instruments created after it starts report here.
 */
export function recordMetrics(): RecordedMetrics {
  const reader = new OnDemandReader();
  const provider = new MeterProvider({ readers: [reader] });
  beforeAll(() => metrics.setGlobalMeterProvider(provider));
  afterAll(async () => {
    await provider.shutdown();
    metrics.disable();
  });
  const recorded: RecordedMetrics = {
    async value(name, attributes = {}) {
      const [value] = await recorded.values([name], attributes);
      return value;
    },
    async values(names, attributes = {}) {
      const { resourceMetrics } = await reader.collect();
      const all = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
      return names.map((name) => {
        let total: number | undefined;
        for (const metric of all) {
          if (metric.descriptor.name !== name) continue;
          for (const point of metric.dataPoints) {
            if (!Object.entries(attributes).every(([k, v]) => point.attributes[k] === v)) continue;
            const value = metric.dataPointType === DataPointType.HISTOGRAM ? (point.value as { count: number }).count : (point.value as number);
            total = (total ?? 0) + value;
          }
        }
        return total;
      });
    },
  };
  return recorded;
}
