import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { chartPoints, createMetricsSampler, sampleOf, summarize } from './metrics.ts';

function registryWith() {
  const registry = new Registry();
  registry.setDefaultLabels({ service: 'orrery' });
  const delivered = new Counter({ name: 'orrery_sink_events_delivered_total', help: 'h', labelNames: ['destination'], registers: [registry] });
  const failed = new Counter({ name: 'orrery_sink_delivery_failures_total', help: 'h', labelNames: ['destination', 'retriable'], registers: [registry] });
  const rejected = new Counter({ name: 'orrery_ingest_requests_rejected_total', help: 'h', labelNames: ['code'], registers: [registry] });
  new Gauge({ name: 'orrery_router_consumer_lag', help: 'h', registers: [registry] }).set(12);
  new Histogram({ name: 'orrery_sink_delivery_latency_seconds', help: 'h', labelNames: ['destination'], registers: [registry] }).observe({ destination: 'hook' }, 0.2);
  new Counter({ name: 'other_total', help: 'h', registers: [registry] }).inc();
  return { registry, delivered, failed, rejected };
}

describe('metrics', () => {
  it('keeps the pipeline counters and gauges, and sums them per destination and for ingest', async () => {
    const { registry, delivered, failed, rejected } = registryWith();
    delivered.inc({ destination: 'hook' }, 5);
    failed.inc({ destination: 'hook', retriable: 'true' }, 2);
    failed.inc({ destination: 'hook', retriable: 'false' });
    rejected.inc({ code: 'invalid_write_key' }, 3);
    const sample = sampleOf(await registry.getMetricsAsJSON(), 1000);
    expect(new Set(sample.series.map((s) => s.name))).toEqual(
      new Set(['orrery_sink_events_delivered_total', 'orrery_sink_delivery_failures_total', 'orrery_ingest_requests_rejected_total', 'orrery_router_consumer_lag']),
    );
    const summary = summarize(sample, ['hook', 'idle']);
    expect(summary.destinations).toEqual({
      hook: { delivered: 5, failed: 3, retries: 0, deadLettered: 0, routed: 0 },
      idle: { delivered: 0, failed: 0, retries: 0, deadLettered: 0, routed: 0 },
    });
    expect(summary.ingest).toEqual({ accepted: 0, rejected: 3, acceptedBySource: {}, rejectedByCode: { invalid_write_key: 3 }, spoolDepth: null });
    expect(summary.router).toEqual({ consumerLag: 12, configVersion: null });
  });

  it('turns samples into per-interval increases, a restart counting from zero', () => {
    const s = (at: number, d: number) => ({ at, series: [{ name: 'orrery_sink_events_delivered_total', labels: { destination: 'hook' }, value: d }] });
    const points = chartPoints([s(0, 10), s(5, 14), s(10, 14), s(15, 2)]);
    expect(points.map((p) => [p.at, p.destinations.hook!.delivered])).toEqual([
      [5, 4],
      [10, 0],
      [15, 2],
    ]);
  });

  it('the sampler keeps its horizon, plus one older sample for the windows', async () => {
    const { registry } = registryWith();
    let now = 0;
    const sampler = createMetricsSampler({ registry, everyMs: 1000, keepMs: 10_000, now: () => now });
    for (now = 0; now <= 30_000; now += 5_000) await sampler.sample();
    expect(sampler.samples().map((x) => x.at)).toEqual([15_000, 20_000, 25_000, 30_000]);
    expect((await sampler.peek()).at).toBe(35_000);
    expect(sampler.samples()).toHaveLength(4);
  });
});
