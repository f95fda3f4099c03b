import { Counter, Gauge, Histogram } from 'prom-client';
import type { Component, ComponentContext } from '../core/component.ts';
import type { ControlPlaneSnapshot, DestinationConfig } from '../core/control-plane.ts';
import { recordDeadLetters, type NewDeadLetter } from './dead-letters.ts';
import { DESTINATIONS } from './destinations/index.ts';
import { createPark } from './park.ts';
import { createSinkWorker, type SinkMetrics, type SinkWorker } from './worker.ts';

/**
 * The sinks component's composition root: one worker (and consumer group) per enabled
 * destination in the control plane, started, stopped and restarted as the control plane
 * changes. Dead letters go to Postgres when there is a database, else to the DLQ topic.
 *
 * @example const sinks = await createSinksComponent(ctx);
 */
export async function createSinksComponent(ctx: ComponentContext): Promise<Component> {
  const { config, adapters, controlPlane, topics } = ctx;
  const log = ctx.logger.child({ component: 'sinks' });
  const bus = adapters.bus;
  const workers = new Map<string, { worker: SinkWorker; fingerprint: string }>();
  const metrics = createSinkMetrics(ctx, workers);
  const store = adapters.store;
  const deadLetter = (letters: NewDeadLetter[]) => recordDeadLetters(store, letters);

  async function reconcile(snapshot: ControlPlaneSnapshot): Promise<void> {
    const wanted = new Map<string, DestinationConfig>();
    for (const d of snapshot.destinations) {
      if (!d.enabled) continue;
      if (!DESTINATIONS.has(d.type)) {
        log.warn({ destination: d.id, type: d.type }, `no sink for destination type "${d.type}": known types are ${[...DESTINATIONS.keys()].join(', ')}`);
        continue;
      }
      wanted.set(d.id, d);
    }
    for (const [id, running] of workers) {
      const next = wanted.get(id);
      if (!next || JSON.stringify(next) !== running.fingerprint) {
        await running.worker.stop();
        workers.delete(id);
        log.info({ destination: id }, next ? 'destination changed: restarting its worker' : 'destination removed: worker stopped');
      }
    }
    for (const [id, d] of wanted) {
      if (workers.has(id)) continue;
      const module = DESTINATIONS.get(d.type)!;
      let worker: SinkWorker;
      try {
        worker = createSinkWorker({
          bus: bus,
          topic: topics.destination(id),
          group: `${config.sinks.groupPrefix}.${id}`,
          destination: d,
          module,
          cache: adapters.cache,
          dedupTtlMs: config.sinks.dedupWindowMs,
          deadLetter,
          park: createPark(store, id),
          policy: {
            maxAttempts: config.sinks.maxAttempts,
            maxAgeMs: config.sinks.maxAgeMs,
            parkAfterMs: config.sinks.parkAfterMs,
            parkMaxEvents: config.sinks.parkMaxEvents,
            backoff: { initialMs: config.sinks.backoffInitialMs, factor: 2, maxMs: config.sinks.backoffMaxMs, jitter: 0.2 },
          },
          concurrency: config.sinks.concurrency,
          partitionConcurrency: config.sinks.partitionConcurrency,
          breaker: { threshold: config.sinks.breakerThreshold, cooldownMs: config.sinks.breakerCooldownMs, maxCooldownMs: config.sinks.breakerCooldownMaxMs },
          fetch: globalThis.fetch,
          logger: log,
          metrics,
        });
      } catch (err) {
        // A destination whose settings do not fit its type is skipped, not fatal for the others.
        log.error({ err, destination: id }, 'invalid destination settings: not delivering to it');
        continue;
      }
      await bus.ensureTopics([{ topic: topics.destination(id), numPartitions: config.kafka.topics.partitions, replicationFactor: config.kafka.topics.replicationFactor }]);
      await worker.start();
      workers.set(id, { worker, fingerprint: JSON.stringify(d) });
    }
  }

  let reconciling = reconcile(controlPlane.current());
  await reconciling;
  const unsubscribe = controlPlane.subscribe((snapshot) => {
    reconciling = reconciling.then(() => reconcile(snapshot)).catch((err: unknown) => log.error({ err }, 'could not apply destination changes'));
  });

  return {
    name: 'sinks',
    checks: {
      breakers: async () => {
        // Half-open is still down: the breaker is between trials or waiting on one.
        const open = [...workers].filter(([, w]) => w.worker.breaker().state() !== 'closed').map(([id]) => id);
        return open.length === 0 ? 'ok' : { status: 'degraded', detail: `circuit open: ${open.join(', ')}` };
      },
    },
    async stop() {
      unsubscribe();
      await reconciling.catch(() => {});
      await Promise.all([...workers.values()].map((w) => w.worker.stop()));
      workers.clear();
    },
  };
}

function createSinkMetrics(ctx: ComponentContext, workers: ReadonlyMap<string, { worker: SinkWorker }>): SinkMetrics {
  const registers = [ctx.registry];
  const delivered = new Counter({ name: 'orrery_sink_events_delivered_total', help: 'Events a destination accepted', labelNames: ['destination'], registers });
  const failed = new Counter({ name: 'orrery_sink_delivery_failures_total', help: 'Failed delivery attempts', labelNames: ['destination', 'retriable'], registers });
  const retried = new Counter({ name: 'orrery_sink_retries_total', help: 'Retries scheduled', labelNames: ['destination'], registers });
  const dead = new Counter({ name: 'orrery_sink_events_dead_lettered_total', help: 'Events given up on', labelNames: ['destination'], registers });
  const parked = new Counter({ name: 'orrery_sink_events_parked_total', help: 'Events moved to the park (a failing user and its later events)', labelNames: ['destination'], registers });
  new Gauge({
    name: 'orrery_sink_parked_events',
    help: 'Events waiting in the park, per destination',
    labelNames: ['destination'],
    registers,
    async collect() {
      this.reset();
      for (const [id, w] of workers) {
        const size = await w.worker.parked().catch(() => undefined);
        if (size) this.set({ destination: id }, size.events);
      }
    },
  });
  const latency = new Histogram({
    name: 'orrery_sink_delivery_latency_seconds',
    help: 'From receivedAt at ingest to accepted by the destination',
    labelNames: ['destination'],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers,
  });
  return {
    delivered(d, events) {
      delivered.inc({ destination: d }, events.length);
      const t = Date.now();
      for (const e of events) latency.observe({ destination: d }, Math.max(0, t - Date.parse(e.receivedAt)) / 1000);
    },
    failed: (d, r) => failed.inc({ destination: d, retriable: String(r) }),
    retried: (d) => retried.inc({ destination: d }),
    deadLettered: (d, n) => dead.inc({ destination: d }, n),
    parked: (d, n) => parked.inc({ destination: d }, n),
  };
}
