import { DLQ_HEADER, dlqHeaders } from '../core/contracts/dlq-headers.ts';
import type { Bus, IncomingBatch, OutgoingMessage } from '../core/bus/types.ts';
import type { Cache } from '../core/cache/types.ts';
import type { ControlPlaneSnapshot } from '../core/control-plane.ts';
import { encodeEnvelope, type Routing } from '../core/envelope.ts';
import { OrreryError } from '../core/errors.ts';
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

/** One record the handler writes, and the raw event (and destination) it came from. */
interface Output {
  message: OutgoingMessage;
  /** Index of the raw event in its batch. */
  from: number;
  /** Set on a destination topic's record; absent on a dead letter. */
  destinationId?: string;
}

/** The messages `produce` refused for being over the record batch limit alone, if that was why. */
function tooLargeIndexes(err: unknown): number[] | undefined {
  if (!(err instanceof OrreryError) || err.code !== 'BUS_RECORD_TOO_LARGE') return undefined;
  const indexes = err.details?.indexes;
  return Array.isArray(indexes) ? (indexes as number[]) : undefined;
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

    const byTopic = new Map<string, Output[]>();
    const push = (topic: string, out: Output) => {
      let list = byTopic.get(topic);
      if (!list) byTopic.set(topic, (list = []));
      list.push(out);
    };
    const deadLetter = (from: number, reason: string, error: string): OutgoingMessage => {
      const message = batch.messages[from]!;
      const story = { stage: 'router', reason, error, originalTopic: batch.topic, originalPartition: batch.partition, originalOffset: message.offset, configVersion: snapshot.version };
      return { key: message.key, value: message.value ?? '', headers: dlqHeaders(story) };
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
        push(opts.topics.dlq, { message: deadLetter(i, outcome.reason, outcome.error), from: i });
        continue;
      }
      if (outcome.kind === 'routed') {
        for (const out of outcome.outputs) {
          // An event no transform touched is written as read plus its routing: no second
          // JSON.stringify (7% of the router's CPU at full speed).
          const spliced = out.asRead && message.value ? spliceRouting(message.value, routingJson(out.envelope.routing!)) : undefined;
          push(opts.topics.destination(out.destinationId), {
            message: { key: message.key, value: spliced ?? encodeEnvelope(out.envelope) },
            from: i,
            destinationId: out.destinationId,
          });
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
    const refused = (await Promise.all([...byTopic].map(([topic, outs]) => produceFitting(topic, outs)))).flat();
    // Records too large for any request: dead letters in their place (see produceOversized).
    const oversized = refused.length > 0 ? await produceOversized(refused) : [];

    if (marks.length > 0) {
      try {
        await opts.cache.setManyIfAbsent(marks, opts.dedupTtlMs);
      } catch (err) {
        if (!dedupDown) log.warn({ err }, 'could not record dedup keys');
      }
    }

    if (opts.metrics) {
      const diverted = new Set(oversized.flatMap((o) => (o.destinationId === undefined ? [] : [`${o.from}\u0000${o.destinationId}`])));
      for (const [i, o] of outcomes.entries()) {
        if (o.kind === 'routed') {
          for (const out of o.outputs) if (!diverted.has(`${i}\u0000${out.destinationId}`)) opts.metrics.routed(out.destinationId, 1);
        } else if (o.kind === 'drop') opts.metrics.dropped(o.reason, 1);
        else opts.metrics.deadLettered(o.reason, 1);
      }
      if (diverted.size > 0) opts.metrics.deadLettered('too_large', diverted.size);
      opts.metrics.batch(now() - started, batch.messages.length);
    }

    /**
     * Produces a topic's records; returns those the bus refused for being over the record
     * batch limit on their own, after writing the others (in their order). Anything else
     * that fails fails the batch, which is then read again.
     */
    async function produceFitting(topic: string, outs: Output[]): Promise<Output[]> {
      try {
        await opts.bus.produce(topic, outs.map((o) => o.message));
        return [];
      } catch (err) {
        const indexes = tooLargeIndexes(err);
        if (!indexes) throw err;
        const bad = new Set(indexes);
        const fitting = outs.filter((_, i) => !bad.has(i));
        if (fitting.length > 0) await opts.bus.produce(topic, fitting.map((o) => o.message));
        log.warn({ err, topic, records: bad.size }, 'records over the record batch limit: dead-lettered instead');
        return outs.filter((_, i) => bad.has(i));
      }
    }

    /**
     * What becomes of a record no request can carry. A routed event becomes a dead letter
     * of the raw event (reason `too_large`). A dead letter that is itself too large (a raw
     * event near the limit, plus the headers) is written without its value, with
     * `x-orrery-value-omitted` saying how many bytes it had: the event itself stays in the
     * raw topic at the original offset its headers name, for as long as that topic keeps
     * it. Either way the batch goes on: one such event must not stop the partition.
     */
    async function produceOversized(refused: Output[]): Promise<Output[]> {
      const letters = refused.flatMap((o) =>
        o.destinationId === undefined
          ? []
          : [{ ...o, message: deadLetter(o.from, 'too_large', `the routed event for ${o.destinationId} is over the bus's record batch limit`) }],
      );
      const omitted = [...refused.filter((o) => o.destinationId === undefined), ...(letters.length > 0 ? await produceFitting(opts.topics.dlq, letters) : [])];
      if (omitted.length > 0) {
        await opts.bus.produce(
          opts.topics.dlq,
          omitted.map(({ message }) => ({
            key: message.key,
            value: '',
            headers: { ...message.headers, [DLQ_HEADER.valueOmitted]: String(typeof message.value === 'string' ? Buffer.byteLength(message.value) : message.value.length) },
          })),
        );
      }
      return refused;
    }
  };
}
