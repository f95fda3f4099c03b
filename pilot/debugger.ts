import { randomBytes } from 'node:crypto';
import type { Bus, IncomingMessage, Subscription } from '../core/bus/types.ts';
import { decodeEnvelope } from '../core/envelope.ts';
import type { Logger } from '../core/logger.ts';

/**
 * The live event debugger, as Segment's and RudderStack's source debuggers: the last events
 * of each source, kept in memory and pushed to the UI as they arrive. Pilot reads the raw
 * topic with a consumer group of its own, from the latest offset: it shows what arrives
 * from now on and never competes with the router for partitions.
 */

/** One event as the debugger shows it. */
export interface DebugEvent {
  /** Increases with every event this process saw: the SSE cursor. */
  seq: number;
  sourceId: string;
  partition: number;
  offset: string;
  /** When Kafka appended it (ms since epoch). */
  at: number;
  /** The envelope, or the raw value when it is not a valid one (shown, never dropped). */
  event: unknown;
  valid: boolean;
  error?: string;
}

/** Fixed-size FIFO: the newest `capacity` items. */
export interface Ring<T> {
  push(item: T): void;
  /** Oldest first. */
  toArray(): T[];
  readonly size: number;
}

/**
 * @example
 *   const ring = createRing<number>(2);
 *   ring.push(1); ring.push(2); ring.push(3);
 *   ring.toArray(); // [2, 3]
 */
export function createRing<T>(capacity: number): Ring<T> {
  const items: T[] = new Array<T>(capacity);
  let next = 0;
  let size = 0;
  return {
    push(item) {
      items[next] = item;
      next = (next + 1) % capacity;
      size = Math.min(size + 1, capacity);
    },
    toArray() {
      const start = (next - size + capacity) % capacity;
      return Array.from({ length: size }, (_, i) => items[(start + i) % capacity]!);
    },
    get size() {
      return size;
    },
  };
}

export interface EventBuffer {
  add(e: Omit<DebugEvent, 'seq'>): DebugEvent;
  /** Oldest first, the newest `limit` of them (default: all kept). All sources merged when `sourceId` is absent. */
  list(opts?: { sourceId?: string | undefined; limit?: number; afterSeq?: number }): DebugEvent[];
  /** Sources seen, with how many events each holds. */
  sources(): Array<{ sourceId: string; events: number; lastAt: number }>;
  /** Called with every new event. Returns the unsubscribe function. */
  subscribe(fn: (e: DebugEvent) => void): () => void;
}

/**
 * Per-source ring buffers. The number of sources is bounded too (the least recently
 * active one goes), so a flood of made-up source ids cannot grow memory without end.
 *
 * @example
 *   const buffer = createEventBuffer({ perSource: 200 });
 *   buffer.add({ sourceId: 'web', partition: 0, offset: '1', at: Date.now(), event: {}, valid: true });
 */
export function createEventBuffer(opts: { perSource?: number; maxSources?: number } = {}): EventBuffer {
  const perSource = opts.perSource ?? 200;
  const maxSources = opts.maxSources ?? 1_000;
  // A Map iterates in insertion order; re-inserting on each event keeps it in LRU order.
  const rings = new Map<string, { ring: Ring<DebugEvent>; lastAt: number }>();
  const subscribers = new Set<(e: DebugEvent) => void>();
  let seq = 0;
  return {
    add(input) {
      const e: DebugEvent = { ...input, seq: ++seq };
      const entry = rings.get(e.sourceId) ?? { ring: createRing<DebugEvent>(perSource), lastAt: 0 };
      rings.delete(e.sourceId);
      entry.ring.push(e);
      entry.lastAt = e.at;
      rings.set(e.sourceId, entry);
      if (rings.size > maxSources) rings.delete(rings.keys().next().value!);
      for (const fn of subscribers) fn(e);
      return e;
    },
    list({ sourceId, limit = Number.POSITIVE_INFINITY, afterSeq = 0 } = {}) {
      const pools = sourceId === undefined ? [...rings.values()] : rings.has(sourceId) ? [rings.get(sourceId)!] : [];
      const all = pools.flatMap((p) => p.ring.toArray()).filter((e) => e.seq > afterSeq);
      all.sort((a, b) => a.seq - b.seq);
      return Number.isFinite(limit) ? all.slice(-limit) : all;
    },
    sources() {
      return [...rings].map(([sourceId, r]) => ({ sourceId, events: r.ring.size, lastAt: r.lastAt })).sort((a, b) => a.sourceId.localeCompare(b.sourceId));
    },
    subscribe(fn) {
      subscribers.add(fn);
      return () => subscribers.delete(fn);
    },
  };
}

/** Values are capped at ingest (32 KB), but a raw value that is not an envelope is shown as text, trimmed. */
const MAX_RAW_CHARS = 32 * 1024;

/**
 * What the debugger keeps of one raw-topic message.
 *
 * @example toDebugEvent(message); // { sourceId: 'web', valid: true, event: { type: 'track', … }, … }
 */
export function toDebugEvent(m: IncomingMessage): Omit<DebugEvent, 'seq'> {
  const decoded = decodeEnvelope(m.value);
  const base = { partition: m.partition, offset: m.offset, at: m.timestamp };
  if (decoded.ok) return { ...base, sourceId: decoded.envelope.sourceId, event: decoded.envelope, valid: true };
  // The key is `sourceId:userId`, so even poison can be filed under its source.
  const sourceId = m.key?.split(':')[0] || 'unknown';
  return { ...base, sourceId, event: m.value?.toString('utf8').slice(0, MAX_RAW_CHARS) ?? null, valid: false, error: decoded.error };
}

export interface RawTopicDebugger {
  /** The consumer group, `orrery-pilot-<random>`. */
  group: string;
  /** True once the group has joined and partitions are assigned. */
  ready(): boolean;
  /** Why the consumer is not running, when it failed. */
  failure(): string | undefined;
  stop(): Promise<void>;
}

/**
 * Consumes the raw topic into `buffer`. Each Pilot process gets a fresh group: every Pilot
 * replica sees every event, and none starts with a backlog. Start-up does not wait for the
 * group to join (that takes seconds on Kafka); `ready()` says when it has.
 *
 * @example const dbg = await startRawTopicDebugger({ bus, topic: topics.raw, buffer, logger });
 */
export async function startRawTopicDebugger(opts: { bus: Bus; topic: string; buffer: EventBuffer; logger: Logger }): Promise<RawTopicDebugger> {
  const group = `orrery-pilot-${randomBytes(6).toString('hex')}`;
  const log = opts.logger.child({ unit: 'debugger', group });
  let joined = false;
  let failure: string | undefined;
  let sub: Subscription | undefined;
  try {
    sub = await opts.bus.consume({
      group,
      topics: [opts.topic],
      fromBeginning: false,
      handle: async (batch) => {
        for (const m of batch.messages) opts.buffer.add(toDebugEvent(m));
      },
      onError: (err) => log.warn({ err }, 'debugger consumer error'),
    });
    sub.ready.then(
      () => {
        joined = true;
        log.info({ topic: opts.topic }, 'debugger: following the raw topic');
      },
      () => {},
    );
  } catch (err) {
    // The debugger is a convenience: Pilot's API and UI work without it.
    failure = (err as Error).message;
    log.error({ err }, 'debugger: cannot consume the raw topic; the live view stays empty');
  }
  return {
    group,
    ready: () => joined,
    failure: () => failure,
    async stop() {
      await sub?.stop();
    },
  };
}
