import type { Bus, IncomingBatch, OutgoingMessage } from '../core/bus/types.ts';
import type { Cache } from '../core/cache/types.ts';
import type { ControlPlaneSnapshot } from '../core/control-plane.ts';
import { encodeEnvelope, type Routing } from '../core/envelope.ts';
import type { Logger } from '../core/logger.ts';
import type { TopicNames } from '../core/topics.ts';
import { routeEnvelope, type Outcome } from './pipeline.ts';
import { dedupKey } from './steps/dedup.ts';
import { spliceRouting } from './splice-routing.ts';
import { parse } from './steps/parse.ts';

export interface RouterMetrics {
  routed(destinationId: string, n: number): void;
  dropped(reason: string, n: number): void;
  deadLettered(reason: string, n: number): void;
  batch(ms: number, events: number): void;
}

export interface RouterHandlerOptions {
  bus: Bus;
  topics: TopicNames;
  /** Dedup window store; dedup is skipped (and counted) while it is unreachable. */
  cache: Cache;
  snapshot: () => ControlPlaneSnapshot;
  /** Creates destination topics the first time they are needed. */
  ensureTopic: (topic: string) => Promise<void>;
  dedupTtlMs: number;
  logger: Logger;
  metrics?: RouterMetrics;
  now?: () => number;
}

/** DLQ headers that tell the story of a dead letter (Jitsu's retries.ts does the same). */
function dlqHeaders(batch: IncomingBatch, offset: string, reason: string, error: string, version: number): Record<string, string> {
  return {
    'x-orrery-stage': 'router',
    'x-orrery-reason': reason,
    'x-orrery-error': error.slice(0, 1000),
    'x-orrery-original-topic': batch.topic,
    'x-orrery-original-partition': String(batch.partition),
    'x-orrery-original-offset': offset,
    'x-orrery-config-version': String(version),
  };
}

/**
 * The one place the router's side effects happen. For one partition batch: look up the
 * batch's dedup keys in one round trip, run each event through the pure pipeline in
 * offset order, produce every output (destination topics and the DLQ) and wait for the
 * acknowledgements, and only then mark the routed keys as seen. The consumer commits the
 * batch's offsets after this resolves, so a crash anywhere before means the batch is read
 * again: at least once, and the dedup marks (written last) turn most of the replay into
 * drops.
 *
 * @example const handle = createRouterHandler({ bus, cache, snapshot: () => cp.current(), ensureTopic, dedupTtlMs, logger });
 */
export function createRouterHandler(opts: RouterHandlerOptions): (batch: IncomingBatch) => Promise<void> {
  const now = opts.now ?? Date.now;
  const log = opts.logger;
  let dedupDown = false;

  return async function routeBatch(batch: IncomingBatch): Promise<void> {
    const started = now();
    const snapshot = opts.snapshot();
    const routedAt = new Date(started).toISOString();

    // Parse once, then look up the dedup keys of every event that parsed in one round trip.
    const parsed = batch.messages.map(parse);
    const lookup = parsed.flatMap((p) => (p.kind === 'ok' ? [dedupKey(p.value)] : []));
    const seen = new Set<string>();
    try {
      const present = await opts.cache.hasMany(lookup);
      lookup.forEach((k, i) => present[i] && seen.add(k));
      if (dedupDown) log.info('dedup store reachable again');
      dedupDown = false;
    } catch (err) {
      // Availability over dedup: routing goes on (duplicates possible) while Redis is away.
      if (!dedupDown) log.warn({ err }, 'dedup store unreachable: routing without dedup');
      dedupDown = true;
      opts.metrics?.dropped('dedup_unavailable', 0);
    }

    const byTopic = new Map<string, OutgoingMessage[]>();
    const push = (topic: string, m: OutgoingMessage) => {
      let list = byTopic.get(topic);
      if (!list) byTopic.set(topic, (list = []));
      list.push(m);
    };
    const marks: string[] = [];
    const outcomes: Outcome[] = [];
    // One routing per destination in a batch: serialised once.
    const routingJsons = new Map<string, string>();
    const routingJson = (r: Routing) => {
      let json = routingJsons.get(r.destinationId);
      if (json === undefined) routingJsons.set(r.destinationId, (json = JSON.stringify(r)));
      return json;
    };
    for (let i = 0; i < batch.messages.length; i++) {
      const message = batch.messages[i]!;
      const p = parsed[i]!;
      const outcome: Outcome =
        p.kind === 'ok' ? routeEnvelope(p.value, snapshot, seen, routedAt) : { kind: 'dlq', reason: p.kind === 'dlq' ? p.reason : 'unparseable', error: p.kind === 'dlq' ? p.error : p.kind };
      outcomes.push(outcome);
      if (outcome.kind === 'dlq') {
        push(opts.topics.dlq, {
          key: message.key,
          value: message.value ?? '',
          headers: dlqHeaders(batch, message.offset, outcome.reason, outcome.error, snapshot.version),
        });
        continue;
      }
      if (outcome.kind === 'routed') {
        for (const out of outcome.outputs) {
          // An event no transform touched is written as read plus its routing: no second
          // JSON.stringify (7% of the router's CPU at full speed).
          const spliced = out.asRead && message.value ? spliceRouting(message.value, routingJson(out.envelope.routing!)) : undefined;
          push(opts.topics.destination(out.destinationId), { key: message.key, value: spliced ?? encodeEnvelope(out.envelope) });
        }
      }
      // Later copies of the same event in this batch are duplicates too.
      if (outcome.dedupKey !== undefined) {
        seen.add(outcome.dedupKey);
        marks.push(outcome.dedupKey);
      }
    }

    for (const topic of byTopic.keys()) if (topic !== opts.topics.dlq) await opts.ensureTopic(topic);
    // One produce per topic, all at once: the bus aggregates them into one request, and
    // each topic's messages keep their offset order.
    await Promise.all([...byTopic].map(([topic, messages]) => opts.bus.produce(topic, messages)));

    if (marks.length > 0) {
      try {
        await opts.cache.setManyIfAbsent(marks, opts.dedupTtlMs);
      } catch (err) {
        if (!dedupDown) log.warn({ err }, 'could not record dedup keys');
      }
    }

    if (opts.metrics) {
      for (const o of outcomes) {
        if (o.kind === 'routed') for (const out of o.outputs) opts.metrics.routed(out.destinationId, 1);
        else if (o.kind === 'drop') opts.metrics.dropped(o.reason, 1);
        else opts.metrics.deadLettered(o.reason, 1);
      }
      opts.metrics.batch(now() - started, batch.messages.length);
    }
  };
}
