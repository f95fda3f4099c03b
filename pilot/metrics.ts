import type { Registry } from '../core/metrics.ts';
import type { MetricSample, SeriesPoint } from './alerts.ts';

/**
 * Pilot's view of the process's Prometheus registry: samples of the pipeline's counters and
 * gauges taken every few seconds and kept in memory, from which the metrics summary, the
 * UI's charts and the alert rules are computed. In memory on purpose: Prometheus is the
 * place for long history; this is the last quarter of an hour, for a glance and for alerts.
 */

/** Only the pipeline's own series; the process metrics (also `orrery_`-prefixed) are not needed. */
const KEPT = /^orrery_(sink|ingest|router|gitops)_/;

type RegistryJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/**
 * Flattens prom-client's JSON (counters and gauges only) into a sample.
 *
 * @example const sample = sampleOf(await registry.getMetricsAsJSON(), Date.now());
 */
export function sampleOf(json: RegistryJson, at: number): MetricSample {
  const series: SeriesPoint[] = [];
  for (const metric of json) {
    const type = String(metric.type);
    if ((type !== 'counter' && type !== 'gauge') || !KEPT.test(metric.name)) continue;
    for (const v of metric.values) {
      const labels: Record<string, string> = {};
      for (const [k, l] of Object.entries(v.labels)) if (l !== undefined) labels[k] = String(l);
      series.push({ name: metric.name, labels, value: v.value });
    }
  }
  return { at, series };
}

export interface DestinationTotals {
  /** Events the destination accepted. */
  delivered: number;
  /** Failed delivery attempts (retried or not). */
  failed: number;
  retries: number;
  deadLettered: number;
  /** Events the router wrote to the destination's topic. */
  routed: number;
}

export interface MetricsSummary {
  at: string;
  destinations: Record<string, DestinationTotals>;
  ingest: {
    accepted: number;
    rejected: number;
    acceptedBySource: Record<string, number>;
    rejectedByCode: Record<string, number>;
    /** Events in the disk spool; null when ingest does not run in this process. */
    spoolDepth: number | null;
  };
  router: { consumerLag: number | null; configVersion: number | null };
}

function by(sample: MetricSample, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of sample.series) {
    const key = p.labels[label];
    if (p.name === name && key !== undefined) out[key] = (out[key] ?? 0) + p.value;
  }
  return out;
}

function gauge(sample: MetricSample, name: string): number | null {
  const points = sample.series.filter((p) => p.name === name);
  return points.length === 0 ? null : points.reduce((s, p) => s + p.value, 0);
}

const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

/**
 * Totals since the process started, per destination and for ingest.
 *
 * @example summarize(sample).destinations.hook?.deadLettered;
 */
export function summarize(sample: MetricSample, knownDestinations: readonly string[] = []): MetricsSummary {
  const delivered = by(sample, 'orrery_sink_events_delivered_total', 'destination');
  const failed = by(sample, 'orrery_sink_delivery_failures_total', 'destination');
  const retries = by(sample, 'orrery_sink_retries_total', 'destination');
  const dead = by(sample, 'orrery_sink_events_dead_lettered_total', 'destination');
  const routed = by(sample, 'orrery_router_events_routed_total', 'destination');
  const ids = new Set([...knownDestinations, ...Object.keys(delivered), ...Object.keys(failed), ...Object.keys(dead), ...Object.keys(routed)]);
  const destinations: Record<string, DestinationTotals> = {};
  for (const id of [...ids].sort()) {
    destinations[id] = { delivered: delivered[id] ?? 0, failed: failed[id] ?? 0, retries: retries[id] ?? 0, deadLettered: dead[id] ?? 0, routed: routed[id] ?? 0 };
  }
  const acceptedBySource = by(sample, 'orrery_ingest_events_accepted_total', 'source');
  const rejectedByCode = by(sample, 'orrery_ingest_requests_rejected_total', 'code');
  return {
    at: new Date(sample.at).toISOString(),
    destinations,
    ingest: {
      accepted: sum(acceptedBySource),
      rejected: sum(rejectedByCode),
      acceptedBySource,
      rejectedByCode,
      spoolDepth: gauge(sample, 'orrery_ingest_spool_depth'),
    },
    router: { consumerLag: gauge(sample, 'orrery_router_consumer_lag'), configVersion: gauge(sample, 'orrery_router_config_version') },
  };
}

/** What happened between two samples. */
export interface ChartPoint {
  at: number;
  ingest: { accepted: number; rejected: number };
  destinations: Record<string, { delivered: number; failed: number; deadLettered: number }>;
}

const grew = (now: number, before: number | undefined) => (now >= (before ?? 0) ? now - (before ?? 0) : now);

/**
 * Per-interval increases between consecutive samples, for the charts: how many events each
 * destination delivered, failed and dead-lettered in each interval.
 *
 * @example chartPoints(sampler.samples()).map((p) => p.destinations.hook?.failed ?? 0);
 */
export function chartPoints(samples: readonly MetricSample[]): ChartPoint[] {
  const points: ChartPoint[] = [];
  for (let i = 1; i < samples.length; i++) {
    const a = summarize(samples[i - 1]!);
    const b = summarize(samples[i]!);
    const destinations: ChartPoint['destinations'] = {};
    for (const [id, t] of Object.entries(b.destinations)) {
      const p = a.destinations[id];
      destinations[id] = { delivered: grew(t.delivered, p?.delivered), failed: grew(t.failed, p?.failed), deadLettered: grew(t.deadLettered, p?.deadLettered) };
    }
    points.push({
      at: samples[i]!.at,
      ingest: { accepted: grew(b.ingest.accepted, a.ingest.accepted), rejected: grew(b.ingest.rejected, a.ingest.rejected) },
      destinations,
    });
  }
  return points;
}

export interface MetricsSampler {
  /** Takes a sample now and keeps it. */
  sample(): Promise<MetricSample>;
  /** Takes a sample now without keeping it: the charts' intervals stay even. */
  peek(): Promise<MetricSample>;
  /** Kept samples, oldest first. */
  samples(): MetricSample[];
  start(): void;
  stop(): void;
}

/**
 * Samples `registry` every `everyMs` and keeps `keepMs` of samples.
 *
 * @example
 *   const sampler = createMetricsSampler({ registry, everyMs: 5_000, keepMs: 15 * 60_000 });
 *   sampler.start();
 */
export function createMetricsSampler(opts: { registry: Registry; everyMs: number; keepMs: number; now?: () => number; onError?: (err: unknown) => void }): MetricsSampler {
  const now = opts.now ?? Date.now;
  const kept: MetricSample[] = [];
  let timer: NodeJS.Timeout | undefined;
  async function sample(): Promise<MetricSample> {
    const s = sampleOf(await opts.registry.getMetricsAsJSON(), now());
    // Samples taken by the alert monitor and the timer interleave; keep them in time order.
    let i = kept.length;
    while (i > 0 && kept[i - 1]!.at > s.at) i--;
    kept.splice(i, 0, s);
    // Keep one sample older than the horizon: windows compare against it.
    while (kept.length > 2 && kept[1]!.at < s.at - opts.keepMs) kept.shift();
    return s;
  }
  return {
    sample,
    peek: async () => sampleOf(await opts.registry.getMetricsAsJSON(), now()),
    samples: () => [...kept],
    start() {
      void sample().catch(opts.onError);
      timer ??= setInterval(() => void sample().catch(opts.onError), opts.everyMs);
      timer.unref();
    },
    stop() {
      clearInterval(timer);
      timer = undefined;
    },
  };
}
