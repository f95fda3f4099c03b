import { getConnInfo } from '@hono/node-server/conninfo';
import { join } from 'node:path';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Context } from 'hono';
import type { Component, ComponentContext } from '../core/component.ts';
import { createErrorBoundary } from '../core/error-boundary.ts';
import type { Registry } from '../core/metrics.ts';
import { createFailOpenLimiter, createLeasedLimiter } from '../core/cache/leased-limiter.ts';
import { createIngestApp, type IngestMetrics } from './app.ts';
import { createHandoff, type Handoff, type HandoffEvent } from './handoff.ts';
import { createLiveSourceResolver } from './sources.ts';
import { openSpool } from './spool-sqlite.ts';

/**
 * The ingest component's composition root: the Hono app over the real hand-off (Kafka,
 * with the disk spool behind it), the source resolver, the limiter and Prometheus metrics.
 *
 * @example const ingest = await createIngestComponent({ config, logger, registry, adapters });
 */
export async function createIngestComponent(ctx: ComponentContext): Promise<Component> {
  const { config, adapters } = ctx;
  const log = ctx.logger.child({ component: 'ingest' });

  // One spool per worker of a cluster: two processes must never write one spool.
  const baseSpool = config.ingest.spool.dir ?? join(config.dataDir, 'spool');
  const spoolDir = ctx.worker ? join(baseSpool, `worker-${ctx.worker.id}`) : baseSpool;
  const spool = await openSpool({ dir: spoolDir, maxBytes: config.ingest.spool.maxBytes, logger: log });
  const metrics = createIngestMetrics(ctx.registry, () => handoff);
  const handoff: Handoff = createHandoff({
    bus: adapters.bus,
    spool,
    topic: ctx.topics.raw,
    timeoutMs: config.ingest.produceTimeoutMs,
    logger: log,
    onEvent: metrics.onHandoffEvent,
  });
  if (handoff.spoolDepth() > 0) log.warn({ records: handoff.spoolDepth() }, 'spool holds events from an earlier run: replaying them');
  const sources = await createLiveSourceResolver(ctx.controlPlane, (err) => log.error({ err }, 'could not apply the new sources'));
  log.info({ sources: ctx.controlPlane.current().sources.length, spool: spoolDir }, 'ingest ready');

  // Redis is asked once per 100 events per source, not once per request; while it is
  // unreachable, events are taken unlimited rather than refused (logged once per outage).
  let limiterDown = false;
  const limiter =
    adapters.cache.kind !== 'redis'
      ? adapters.cache
      : createFailOpenLimiter(createLeasedLimiter(adapters.cache.take.bind(adapters.cache), { leaseTokens: 100, leaseMs: 1_000 }).take, {
          onUnavailable(err) {
            if (!limiterDown) log.warn({ err }, 'rate limiter unreachable: taking events without limiting them until it is back');
            limiterDown = true;
          },
          onRecovered() {
            limiterDown = false;
            log.info('rate limiter reachable again');
          },
        });
  const trustProxy = config.ingest.trustProxy;
  const app = createIngestApp({
    sources,
    handoff,
    limiter,
    defaultRateLimit: { capacity: config.ingest.rateLimit.burst, refillPerSec: config.ingest.rateLimit.eventsPerSecond },
    metrics,
    clientIp: (c: Context) => clientIp(c, trustProxy),
    onUnexpectedError: createErrorBoundary({ surface: 'ingest', logger: log, registry: ctx.registry }),
  });

  return {
    name: 'ingest',
    routes: app,
    checks: {
      handoff: async () => (handoff.state() === 'ok' ? 'ok' : { status: 'degraded', detail: `spooling: ${handoff.spoolDepth()} events on disk` }),
    },
    async stop() {
      sources.close();
      await handoff.close();
      await spool.close();
    },
  };
}

/** The address of the connection, or the first X-Forwarded-For hop behind a trusted proxy. */
function clientIp(c: Context, trustProxy: boolean): string | undefined {
  if (trustProxy) {
    const forwarded = c.req.header('x-forwarded-for')?.split(',')[0]?.trim();
    if (forwarded) return forwarded;
  }
  try {
    return getConnInfo(c).remote.address;
  } catch {
    // app.request() in tests and non-Node runtimes have no socket.
    return undefined;
  }
}

function createIngestMetrics(registry: Registry, handoff: () => Handoff | undefined): IngestMetrics & { onHandoffEvent: (e: HandoffEvent) => void } {
  const accepted = new Counter({ name: 'orrery_ingest_events_accepted_total', help: 'Events acknowledged to clients', labelNames: ['source'], registers: [registry] });
  const rejected = new Counter({ name: 'orrery_ingest_requests_rejected_total', help: 'Requests refused, by error code', labelNames: ['code'], registers: [registry] });
  const handoffSeconds = new Histogram({
    name: 'orrery_ingest_handoff_seconds',
    help: 'Time from a request being valid to its events being durable, by path (bus or spool)',
    labelNames: ['via'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const produceSeconds = new Histogram({
    name: 'orrery_ingest_produce_seconds',
    help: 'Kafka produce latency of hand-off sends and spool replays',
    labelNames: ['kind'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const handoffEvents = new Counter({ name: 'orrery_ingest_handoff_events_total', help: 'Hand-off outcomes in events', labelNames: ['outcome'], registers: [registry] });
  new Gauge({
    name: 'orrery_ingest_spool_depth',
    help: 'Events in the local disk spool, waiting for Kafka',
    registers: [registry],
    collect() {
      this.set(handoff()?.spoolDepth() ?? 0);
    },
  });
  return {
    accepted: (source, n) => accepted.inc({ source }, n),
    rejected: (code, n) => rejected.inc({ code }, n),
    handedOff: (via, ms) => handoffSeconds.observe({ via }, ms / 1000),
    onHandoffEvent(e) {
      if (e.type === 'produced' || e.type === 'replayed') produceSeconds.observe({ kind: e.type }, e.ms / 1000);
      if (e.type === 'replay_failed') handoffEvents.inc({ outcome: e.type });
      else if (e.type === 'spool_full') handoffEvents.inc({ outcome: e.type });
      else handoffEvents.inc({ outcome: e.type }, e.records);
    },
  };
}
