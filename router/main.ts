import { Counter, Gauge, Histogram } from 'prom-client';
import { stalledPartitions, type PartitionFailure } from '../core/bus/progress.ts';
import type { Component, ComponentContext } from '../core/component.ts';
import { startDlqRecorder } from './dlq-recorder.ts';
import { createRouterHandler, type RouterMetrics } from './handler.ts';

/**
 * The router component's composition root: a consumer group on the raw topic, the
 * pipeline handler, destination topics kept in step with the control plane, metrics, and
 * the recorder that copies the DLQ topic into the store for Pilot.
 *
 * @example const router = await createRouterComponent(ctx);
 */
export async function createRouterComponent(ctx: ComponentContext): Promise<Component> {
  const { config, adapters, controlPlane, topics } = ctx;
  const log = ctx.logger.child({ component: 'router' });
  const bus = adapters.bus;

  const topicSettings = config.kafka.topics;
  const ensured = new Set<string>();
  async function ensureTopic(topic: string): Promise<void> {
    if (ensured.has(topic)) return;
    await bus.ensureTopics([{ topic, numPartitions: topicSettings.partitions, replicationFactor: topicSettings.replicationFactor }]);
    ensured.add(topic);
  }
  const ensureDestinations = async () => {
    for (const d of controlPlane.current().destinations) await ensureTopic(topics.destination(d.id));
  };
  await ensureDestinations();
  const unsubscribe = controlPlane.subscribe((snapshot) => {
    log.info({ version: snapshot.version, routes: snapshot.routes.length }, 'control plane changed: routing with the new version');
    ensureDestinations().catch((err: unknown) => log.warn({ err }, 'could not create destination topics'));
  });

  const metrics = createRouterMetrics(ctx);
  const handle = createRouterHandler({
    bus,
    topics,
    cache: adapters.cache,
    snapshot: () => controlPlane.current(),
    ensureTopic,
    dedupTtlMs: config.router.dedupWindowMs,
    logger: log,
    metrics,
  });
  const consumerErrors = new Counter({
    name: 'orrery_router_consumer_errors_total',
    help: 'Batches that failed to route (read again) and consumer crashes',
    registers: [ctx.registry],
  });
  const subscription = await bus.consume({
    group: config.router.group,
    topics: [topics.raw],
    fromBeginning: true,
    concurrency: config.router.partitionConcurrency,
    handle,
    onError: (err) => {
      consumerErrors.inc();
      log.error({ err }, 'routing a batch failed: it will be read again');
    },
  });
  log.info({ group: config.router.group, version: controlPlane.current().version }, 'router consuming');

  const recorderGroup = `${config.router.group}-dlq-recorder`;
  const recorded = new Counter({ name: 'orrery_router_dead_letters_recorded_total', help: 'DLQ messages copied into the store', registers: [ctx.registry] });
  const recorder = await startDlqRecorder({ bus, store: adapters.store, topic: topics.dlq, group: recorderGroup, logger: log, onRecorded: (n) => recorded.inc(n) });
  log.info({ group: recorderGroup, topic: topics.dlq }, 'recording router dead letters into the store');

  /**
   * A batch that fails every time (a write the broker refuses for good) leaves the process
   * up with the partition going nowhere. Stalled (router.stallAfterMs): /readyz down, so
   * the fault is seen; stalled for router.stallLivenessMs: /healthz down, so that the
   * supervisor restarts the process, which at least says so loudly (CrashLoopBackOff).
   * Failing but not yet stalled is `degraded` (a Kafka hiccup is retried meanwhile).
   */
  const stalledFor = (afterMs: number) => stalledPartitions(subscription.progress(), { afterMs }, Date.now());
  const describe = (stalled: PartitionFailure[]) =>
    stalled.map((f) => `${f.topic}[${f.partition}] at offset ${f.offset}: ${f.failures} failures since ${new Date(f.since).toISOString()}, last: ${f.error}`).join('; ');
  new Gauge({
    name: 'orrery_router_stalled_partitions',
    help: 'Raw-topic partitions whose batch has kept failing for router.stallAfterMs (readiness fails while above 0)',
    registers: [ctx.registry],
    collect() {
      this.set(stalledFor(config.router.stallAfterMs).length);
    },
  });

  return {
    name: 'router',
    checks: {
      consumer: async () => {
        const stalled = stalledFor(config.router.stallAfterMs);
        if (stalled.length > 0) return { status: 'down', detail: `stalled: ${describe(stalled)}` };
        const failing = subscription.progress().failing;
        return failing.length > 0 ? { status: 'degraded', detail: `failing, read again: ${describe(failing)}` } : 'ok';
      },
      deadLetters: async () => (recorder.failure() ? { status: 'degraded' as const, detail: `recording dead letters: ${recorder.failure()}` } : ('ok' as const)),
    },
    liveness: {
      consumer: async () => {
        const stalled = stalledFor(config.router.stallLivenessMs);
        return stalled.length > 0 ? { status: 'down', detail: `stalled: ${describe(stalled)}` } : 'ok';
      },
    },
    async stop() {
      unsubscribe();
      // Lets the batch in flight finish, produce and commit before leaving the group.
      await subscription.stop();
      await recorder.stop();
    },
  };
}

function createRouterMetrics(ctx: ComponentContext): RouterMetrics {
  const registers = [ctx.registry];
  const routed = new Counter({ name: 'orrery_router_events_routed_total', help: 'Events written to a destination topic', labelNames: ['destination'], registers });
  const dropped = new Counter({ name: 'orrery_router_events_dropped_total', help: 'Events not routed, by reason', labelNames: ['reason'], registers });
  const dlq = new Counter({ name: 'orrery_router_events_dead_lettered_total', help: 'Events sent to the DLQ, by reason', labelNames: ['reason'], registers });
  const seconds = new Histogram({
    name: 'orrery_router_batch_seconds',
    help: 'Time to route one partition batch, produce included',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  const version = new Gauge({ name: 'orrery_router_config_version', help: 'Control-plane version in use', registers });
  version.set(ctx.controlPlane.current().version);
  ctx.controlPlane.subscribe((s) => version.set(s.version));
  if (ctx.adapters.bus.lag) {
    const bus = ctx.adapters.bus;
    new Gauge({
      name: 'orrery_router_consumer_lag',
      help: 'Raw-topic messages not yet routed (committed offset to high watermark)',
      registers,
      async collect() {
        try {
          this.set(await bus.lag!(ctx.config.router.group, ctx.topics.raw));
        } catch {
          // Kafka unreachable: leave the last value.
        }
      },
    });
  }
  return {
    routed: (d, n) => routed.inc({ destination: d }, n),
    dropped: (r, n) => dropped.inc({ reason: r }, n),
    deadLettered: (r, n) => dlq.inc({ reason: r }, n),
    batch: (ms) => seconds.observe(ms / 1000),
  };
}
