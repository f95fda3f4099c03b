import { OrreryError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { RECORD_BATCH_OVERHEAD, recordBytes } from './record-size.ts';
import type { OutgoingMessage, Subscription } from './types.ts';

/**
 * What the Kafka adapters (./kafka.ts on kafkajs, ./platformatic.ts on @platformatic/kafka)
 * share: how a produce call is checked and split, how calls are queued, lingered and sent
 * one request at a time, how commits of partitions handled together are coalesced, how a
 * failed write is reported, and how lag is counted. Only the client calls differ.
 */

/** What both Kafka adapters take, besides their client's retry settings. */
export interface KafkaClientOptions {
  brokers: string[];
  clientId: string;
  logger: Logger;
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  /**
   * Upper bound on one aggregated produce request, in record batch bytes as the broker counts
   * them (keys, values, headers and framing: ./record-size.ts). A produce call larger than
   * this is split into several. Default 768 KiB: under the broker's 1 MiB with room to spare.
   */
  maxFlushBytes?: number;
  /**
   * The largest record batch the topics take (their `max.message.bytes`; the broker's
   * default is 1 MiB + 12 bytes). A message that alone would make a larger batch is
   * refused by `produce` with the non-retriable `BUS_RECORD_TOO_LARGE` before anything
   * is sent, so it cannot make the broker refuse a request that other writes share.
   */
  maxBatchBytes?: number;
  /**
   * Once nothing is in flight, how long the first queued write waits for others to join
   * its request (Kafka's `linger.ms`), unless `lingerBytes` are queued already. Default 0
   * here (tests and tools); the config's default is 5 ms, Kafka's own producer default.
   */
  lingerMs?: number;
  /**
   * Queued bytes that end the linger at once (the role of Kafka's `batch.size`, 16 KiB by
   * default): a linger is for a trickle of small writes, and must not delay a router
   * batch or an ingest /v1/batch that fills a request on its own. Default 16 KiB.
   */
  lingerBytes?: number;
  /** Consumers' fetch: answer once this many bytes are there (Kafka's `fetch.min.bytes`). Default: kafkajs's, 1. */
  fetchMinBytes?: number;
  /** Consumers' fetch: answer after this long at most (Kafka's `fetch.max.wait.ms`). Default: kafkajs's 5 s on kafkajs, 500 ms (Kafka's consumer default) on @platformatic/kafka. */
  fetchMaxWaitMs?: number;
}

/**
 * An error's message with the reasons nested in it: @platformatic/kafka reports a refused
 * write as "Producing messages failed." and keeps the broker's words ("The request included
 * a message larger than the max message size …") two levels down, in `errors`.
 */
export function errorText(err: unknown): string {
  const top = (err as Error | undefined)?.message ?? String(err);
  const reasons: string[] = [];
  const walk = (e: unknown, depth: number): void => {
    if (!e || typeof e !== 'object' || depth > 6) return;
    const nested = [...((e as { errors?: unknown[] }).errors ?? []), ...((e as { cause?: unknown }).cause ? [(e as { cause: unknown }).cause] : [])];
    if (nested.length === 0) {
      const m = (e as Error).message;
      if (m && m !== top && !reasons.includes(m)) reasons.push(m);
      return;
    }
    for (const n of nested) walk(n, depth + 1);
  };
  walk(err, 0);
  return reasons.length > 0 ? `${top} ${reasons.join('; ')}` : top;
}

/** A failed write as the bus reports it: retriable `BUS_UNAVAILABLE` or final `BUS_PRODUCE_REJECTED`. */
export function wrapProduceError(err: unknown, topic: string, unavailable: boolean): OrreryError {
  if (unavailable) {
    return new OrreryError('BUS_UNAVAILABLE', `kafka did not acknowledge the write to ${topic}: ${errorText(err)}`, {
      retriable: true,
      cause: err,
      status: 503,
    });
  }
  return new OrreryError('BUS_PRODUCE_REJECTED', `kafka refused the write to ${topic}: ${errorText(err)}`, {
    retriable: false,
    cause: err,
  });
}

/** Socket errors that mean "not reachable right now". */
export const UNREACHABLE_CODES = /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH)$/;

export interface ProducePart {
  messages: OutgoingMessage[];
  bytes: number;
}

/**
 * Splits one produce call into parts that each fit one request (Kafka refuses a partition
 * batch over max.message.bytes, 1 MiB by default, for good). Sizes are the record batch's as
 * the broker measures it, headers and framing included: dead letters carry more header than
 * value, and counting values alone let a DLQ request pass the limit and be refused on every
 * redelivery (issue #15). Clients group a request by partition and the limit is per partition
 * batch, but which partition a key lands on is the partitioner's, so the whole request counts.
 * Throws the non-retriable `BUS_RECORD_TOO_LARGE` when a message alone exceeds `maxBatchBytes`.
 */
export function splitProduce(topic: string, messages: OutgoingMessage[], maxBatchBytes: number, maxFlushBytes: number): ProducePart[] {
  const sizes = messages.map(recordBytes);
  const tooLarge = sizes.flatMap((size, index) => (RECORD_BATCH_OVERHEAD + size > maxBatchBytes ? [index] : []));
  if (tooLarge.length > 0) {
    const bytes = tooLarge.map((i) => RECORD_BATCH_OVERHEAD + sizes[i]!);
    throw new OrreryError(
      'BUS_RECORD_TOO_LARGE',
      `${tooLarge.length} of ${messages.length} messages for ${topic} exceed the record batch limit of ${maxBatchBytes} bytes alone (the largest: ${Math.max(...bytes)} bytes)`,
      { retriable: false, status: 413, details: { topic, indexes: tooLarge, bytes, limit: maxBatchBytes } },
    );
  }
  const parts: ProducePart[] = [];
  let current: OutgoingMessage[] = [];
  let currentBytes = RECORD_BATCH_OVERHEAD;
  messages.forEach((m, i) => {
    const size = sizes[i]!;
    if (current.length > 0 && currentBytes + size > maxFlushBytes) {
      parts.push({ messages: current, bytes: currentBytes });
      current = [];
      currentBytes = RECORD_BATCH_OVERHEAD;
    }
    current.push(m);
    currentBytes += size;
  });
  parts.push({ messages: current, bytes: currentBytes });
  return parts;
}

export interface ProduceQueueOptions {
  logger: Logger;
  /** The topics' max.message.bytes: a message that alone exceeds it is refused (BUS_RECORD_TOO_LARGE). */
  maxBatchBytes: number;
  maxFlushBytes: number;
  lingerMs: number;
  lingerBytes: number;
  /** Sends one request: every topic's messages, in queue order. Resolves once acknowledged. */
  send(byTopic: Map<string, OutgoingMessage[]>): Promise<void>;
  /** After a failed send: replace the producer (its idempotence sequence may be off). */
  reset(): Promise<void>;
  /** The error a caller of a failed send gets. */
  wrapError(err: unknown, topic: string): OrreryError;
}

interface Pending {
  topic: string;
  messages: OutgoingMessage[];
  bytes: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface ProduceQueue {
  /**
   * `Bus.produce`: splits the call into requests that fit (`splitProduce`) and queues them
   * back to back, so order holds; a failed part fails the parts behind it. Resolves once all
   * of them are acknowledged.
   */
  produce(topic: string, messages: OutgoingMessage[]): Promise<void>;
  /** Refuses new calls (BUS_CLOSED), sends whatever is queued and waits until nothing is in flight. */
  close(): Promise<void>;
}

/**
 * Concurrent `produce` calls are aggregated: while one request is in flight, new calls queue,
 * and the next flush sends all of them (across topics) in one request. One request in flight
 * at a time also keeps each key's order. Once nothing is in flight, the first queued write
 * waits `lingerMs` for others unless `lingerBytes` are queued already.
 */
export function createProduceQueue(opts: ProduceQueueOptions): ProduceQueue {
  const queue: Pending[] = [];
  let flushing = false;
  let lingerTimer: NodeJS.Timeout | undefined;
  let queuedBytes = 0;
  let closed = false;

  function scheduleFlush(): void {
    if (opts.lingerMs <= 0 || queuedBytes >= opts.lingerBytes) {
      if (lingerTimer) clearTimeout(lingerTimer);
      lingerTimer = undefined;
      setImmediate(() => void flush());
      return;
    }
    lingerTimer ??= setTimeout(() => {
      lingerTimer = undefined;
      void flush();
    }, opts.lingerMs);
  }

  function takeFlush(): Pending[] {
    const batch: Pending[] = [];
    let bytes = 0;
    while (queue.length > 0) {
      const next = queue[0]!;
      if (batch.length > 0 && bytes + next.bytes > opts.maxFlushBytes) break;
      batch.push(queue.shift()!);
      bytes += next.bytes;
      queuedBytes -= next.bytes;
    }
    return batch;
  }

  async function flush(): Promise<void> {
    if (flushing) return;
    flushing = true;
    try {
      while (queue.length > 0) {
        const batch = takeFlush();
        const byTopic = new Map<string, OutgoingMessage[]>();
        for (const p of batch) {
          let list = byTopic.get(p.topic);
          if (!list) byTopic.set(p.topic, (list = []));
          list.push(...p.messages);
        }
        try {
          await opts.send(byTopic);
          for (const p of batch) p.resolve();
        } catch (err) {
          // Calls queued behind a failed write fail with it: sent on the next producer,
          // they could land before the failed ones are retried, and break per-key order.
          const behind = queue.splice(0);
          queuedBytes = 0;
          opts.logger.warn({ err, calls: batch.length + behind.length }, 'produce failed');
          await opts.reset();
          for (const p of [...batch, ...behind]) p.reject(opts.wrapError(err, p.topic));
        }
      }
    } finally {
      flushing = false;
    }
  }

  function enqueue(topic: string, parts: ProducePart[]): Promise<void> {
    const sent = parts.map(
      (part) =>
        new Promise<void>((resolve, reject) => {
          queue.push({ topic, messages: part.messages, bytes: part.bytes, resolve, reject });
          queuedBytes += part.bytes;
        }),
    );
    // Defer to the end of this turn (or the linger) so that calls made together share one
    // request; a full request goes at once.
    if (!flushing) scheduleFlush();
    return Promise.all(sent).then(() => undefined);
  }

  return {
    produce(topic, messages) {
      if (closed) return Promise.reject(new OrreryError('BUS_CLOSED', 'the bus is closed', { retriable: false }));
      if (messages.length === 0) return Promise.resolve();
      try {
        return enqueue(topic, splitProduce(topic, messages, opts.maxBatchBytes, opts.maxFlushBytes));
      } catch (err) {
        return Promise.reject(err);
      }
    },
    async close() {
      closed = true;
      if (lingerTimer) {
        clearTimeout(lingerTimer);
        lingerTimer = undefined;
      }
      // Whatever was queued before close still gets its answer.
      while (flushing || queue.length > 0) {
        if (!flushing) await flush();
        else await new Promise((r) => setTimeout(r, 5));
      }
    },
  };
}

/**
 * `Bus.close` of a Kafka adapter: whatever was queued still gets its answer, the
 * subscriptions stop (their in-flight batches commit), then the clients close. Once only.
 */
export function kafkaBusCloser(queue: ProduceQueue, subscriptions: Set<Subscription>, closeClients: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () =>
    (closing ??= (async () => {
      await queue.close();
      await Promise.all([...subscriptions].map((s) => s.stop()));
      await closeClients();
    })());
}

export type CommitFn = (offsets: { topics: Array<{ topic: string; partitions: Array<{ partition: number; offset: string }> }> }) => Promise<void>;

/**
 * Commits of partitions handled at the same time share one OffsetCommit request: while
 * one commit is in flight, the next gathers every partition that finished meanwhile. Each
 * caller still resolves only once its own offset is committed. At moderate rates a fetch
 * brings a few messages for each of several partitions, and a commit per partition batch
 * was most of a stage's Kafka requests.
 */
export function commitCoalescer(): (topic: string, partition: number, offset: string, via: CommitFn) => Promise<void> {
  type Waiter = { resolve: () => void; reject: (err: unknown) => void };
  let pending = new Map<string, { topic: string; partition: number; offset: string; waiters: Waiter[] }>();
  let via: CommitFn | undefined;
  let running = false;

  async function run(): Promise<void> {
    if (running) return;
    running = true;
    try {
      while (pending.size > 0) {
        const taken = pending;
        pending = new Map();
        const topics = new Map<string, Array<{ partition: number; offset: string }>>();
        for (const p of taken.values()) {
          let parts = topics.get(p.topic);
          if (!parts) topics.set(p.topic, (parts = []));
          parts.push({ partition: p.partition, offset: p.offset });
        }
        try {
          await via!({ topics: [...topics].map(([topic, partitions]) => ({ topic, partitions })) });
          for (const p of taken.values()) for (const w of p.waiters) w.resolve();
        } catch (err) {
          for (const p of taken.values()) for (const w of p.waiters) w.reject(err);
        }
      }
    } finally {
      running = false;
    }
  }

  return (topic, partition, offset, commitVia) => {
    const key = `${partition}\u0000${topic}`;
    return new Promise<void>((resolve, reject) => {
      const prev = pending.get(key);
      // A later batch of the same partition carries the higher offset; both wait for it.
      if (prev) Object.assign(prev, { offset }).waiters.push({ resolve, reject });
      else pending.set(key, { topic, partition, offset, waiters: [{ resolve, reject }] });
      via = commitVia;
      // At the end of this turn, so that partitions finishing together share the request.
      if (!running) setImmediate(() => void run());
    });
  };
}

/**
 * Messages of a topic a group has not committed yet: per partition, from the committed
 * offset (or, with nothing committed, the low watermark) to the high watermark.
 */
export function lagOf(partitions: Array<{ partition: number; low: bigint; high: bigint }>, committed: Map<number, bigint>): number {
  let total = 0n;
  for (const p of partitions) {
    const at = committed.get(p.partition) ?? -1n;
    total += at < 0n ? p.high - p.low : p.high - at;
  }
  return Number(total);
}
