import {
  Kafka,
  Partitioners,
  logLevel as KafkaLogLevel,
  type Admin,
  type Consumer,
  type LogEntry,
  type Producer,
  type RetryOptions as KafkaRetryOptions,
  type TopicMessages,
} from 'kafkajs';
import './kafkajs-negative-timeout.ts';
import { OrreryError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { TopicSpec } from '../topics.ts';
import { createProgressTracker } from './progress.ts';
import { DEFAULT_MAX_BATCH_BYTES, RECORD_BATCH_OVERHEAD, recordBytes } from './record-size.ts';
import type { Bus, ConsumeOptions, IncomingBatch, OutgoingMessage, Subscription } from './types.ts';

export interface KafkaBusOptions {
  brokers: string[];
  clientId: string;
  logger: Logger;
  /**
   * kafkajs retry settings for connections and requests. The default gives up within a few
   * seconds, so that callers with a fallback (ingest's spool) learn of an outage quickly;
   * kafkajs's own default keeps a produce hanging for a minute or more.
   */
  retry?: KafkaRetryOptions;
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  /**
   * Upper bound on one aggregated `sendBatch`, in record batch bytes as the broker counts
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
  /** Consumers' fetch: answer after this long at most (Kafka's `fetch.max.wait.ms`). Default: kafkajs's, 5 s. */
  fetchMaxWaitMs?: number;
}

interface Pending {
  topic: string;
  messages: OutgoingMessage[];
  bytes: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

const DEFAULT_RETRY: KafkaRetryOptions = { retries: 4, initialRetryTime: 100, maxRetryTime: 2_000 };

const KAFKAJS_TO_PINO: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [KafkaLogLevel.ERROR]: 'error',
  [KafkaLogLevel.WARN]: 'warn',
  [KafkaLogLevel.INFO]: 'info',
  [KafkaLogLevel.DEBUG]: 'debug',
};

/**
 * Kafka errors that mean "not reachable right now", as opposed to a refused request.
 * kafkajs wraps the connection error it gave up on in a non-retriable error (`cause`, or
 * `originalError` on older paths), so the whole chain is looked at.
 */
function isUnavailable(err: unknown): boolean {
  const seen = new Set<unknown>();
  for (let e = err as KafkaErrorLike | undefined; e && !seen.has(e); e = (e.cause ?? e.originalError) as KafkaErrorLike | undefined) {
    seen.add(e);
    if (UNAVAILABLE_NAMES.has(e.name ?? '') || e.retriable === true) return true;
    if (typeof e.code === 'string' && /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH)$/.test(e.code)) return true;
  }
  return false;
}

type KafkaErrorLike = { name?: string; code?: unknown; retriable?: boolean; cause?: unknown; originalError?: unknown };

const UNAVAILABLE_NAMES = new Set([
  'KafkaJSConnectionError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSConnectionClosedError',
  'KafkaJSBrokerNotFound',
  'KafkaJSMetadataNotLoaded',
  'KafkaJSTimeout',
  'KafkaJSLockTimeout',
]);

function wrapProduceError(err: unknown, topic: string): OrreryError {
  if (isUnavailable(err)) {
    return new OrreryError('BUS_UNAVAILABLE', `kafka did not acknowledge the write to ${topic}: ${(err as Error).message}`, {
      retriable: true,
      cause: err,
      status: 503,
    });
  }
  return new OrreryError('BUS_PRODUCE_REJECTED', `kafka refused the write to ${topic}: ${(err as Error).message}`, {
    retriable: false,
    cause: err,
  });
}

/**
 * What a failed handler throws into kafkajs: always retriable, with no `cause` chain. kafkajs
 * bails out at once on an error whose `retriable` is false, and restarts a crashed consumer
 * only when the root of the chain is retriable (consumer/index.js onCrash; restartOnFailure
 * is not even asked otherwise): a batch whose write Kafka refused for good (a non-retriable
 * BUS_PRODUCE_REJECTED) stopped the consumer for good, the process up and /readyz 200 (issue
 * #15). For a consumer every failure means "deliver the batch again"; whether that is
 * getting anywhere is the stage's call, through Subscription.progress().
 */
class BatchRedelivery extends Error {
  readonly retriable = true;
  /** The handler's own error (not `cause`: kafkajs would judge by it). */
  readonly handlerError: unknown;
  constructor(message: string, handlerError: unknown) {
    super(message);
    this.name = 'OrreryBatchRedelivery';
    this.handlerError = handlerError;
  }
}

type CommitFn = (offsets: { topics: Array<{ topic: string; partitions: Array<{ partition: number; offset: string }> }> }) => Promise<void>;

/**
 * Commits of partitions handled at the same time share one OffsetCommit request: while
 * one commit is in flight, the next gathers every partition that finished meanwhile. Each
 * caller still resolves only once its own offset is committed. At moderate rates a fetch
 * brings a few messages for each of several partitions, and a commit per partition batch
 * was most of a stage's Kafka requests.
 */
function commitCoalescer(): (topic: string, partition: number, offset: string, via: CommitFn) => Promise<void> {
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
 * The bus on Apache Kafka through kafkajs.
 *
 * Producing: an idempotent producer with `acks=-1`. kafkajs has no linger setting, so
 * concurrent `produce` calls are aggregated here: while one `sendBatch` is in flight, new
 * calls queue, and the next flush sends all of them (across topics) in one request. One
 * request in flight at a time also keeps each key's order.
 *
 * Consuming: `eachBatch` per partition with auto-commit off; the batch's offsets are
 * committed only after the handler resolves.
 *
 * @example
 *   const bus = createKafkaBus({ brokers: ['127.0.0.1:9092'], clientId: 'orrery', logger });
 *   await bus.produce(Topics.raw, [{ key: 'src:u1', value: '{…}' }]);
 */
export function createKafkaBus(opts: KafkaBusOptions): Bus {
  const log = opts.logger.child({ component: 'bus', adapter: 'kafka' });
  const kafka = new Kafka({
    clientId: opts.clientId,
    brokers: opts.brokers,
    connectionTimeout: opts.connectionTimeoutMs ?? 3_000,
    requestTimeout: opts.requestTimeoutMs ?? 30_000,
    retry: opts.retry ?? DEFAULT_RETRY,
    logLevel: KafkaLogLevel.WARN,
    logCreator: () =>
      function kafkajsToPino({ level, log: entry }: LogEntry) {
        const { message, ...fields } = entry;
        log[KAFKAJS_TO_PINO[level] ?? 'info']({ kafkajs: fields }, message);
      },
  });
  const maxBatchBytes = opts.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
  const maxFlushBytes = Math.min(opts.maxFlushBytes ?? 768 * 1024, maxBatchBytes);
  const lingerMs = opts.lingerMs ?? 0;
  const lingerBytes = Math.min(opts.lingerBytes ?? 16 * 1024, maxFlushBytes);

  let producer: Producer | undefined;
  let producerReady: Promise<Producer> | undefined;
  let admin: Promise<Admin> | undefined;
  const subscriptions = new Set<Subscription>();
  const queue: Pending[] = [];
  let flushing = false;
  let closed = false;

  function getProducer(): Promise<Producer> {
    producerReady ??= (async () => {
      const p = kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        createPartitioner: Partitioners.DefaultPartitioner,
        retry: opts.retry ?? DEFAULT_RETRY,
      });
      try {
        await p.connect();
      } catch (err) {
        producerReady = undefined;
        await p.disconnect().catch(() => {});
        throw err;
      }
      producer = p;
      return p;
    })();
    return producerReady;
  }

  /**
   * After a failed send the idempotent producer's sequence numbers may no longer match the
   * broker's, so it is replaced; the new one gets a fresh producer id. A retried call may
   * then write a message twice: at least once, with messageId dedup downstream.
   */
  async function resetProducer(): Promise<void> {
    const old = producer;
    producer = undefined;
    producerReady = undefined;
    await old?.disconnect().catch(() => {});
  }

  let lingerTimer: NodeJS.Timeout | undefined;
  let queuedBytes = 0;
  function scheduleFlush(): void {
    if (lingerMs <= 0 || queuedBytes >= lingerBytes) {
      if (lingerTimer) clearTimeout(lingerTimer);
      lingerTimer = undefined;
      setImmediate(() => void flush());
      return;
    }
    lingerTimer ??= setTimeout(() => {
      lingerTimer = undefined;
      void flush();
    }, lingerMs);
  }

  function takeFlush(): Pending[] {
    const batch: Pending[] = [];
    let bytes = 0;
    while (queue.length > 0) {
      const next = queue[0]!;
      if (batch.length > 0 && bytes + next.bytes > maxFlushBytes) break;
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
        const byTopic = new Map<string, TopicMessages>();
        for (const p of batch) {
          let tm = byTopic.get(p.topic);
          if (!tm) byTopic.set(p.topic, (tm = { topic: p.topic, messages: [] }));
          for (const m of p.messages) tm.messages.push({ key: m.key, value: m.value, headers: m.headers ?? {} });
        }
        try {
          const prod = await getProducer();
          await prod.sendBatch({ topicMessages: [...byTopic.values()], acks: -1 });
          for (const p of batch) p.resolve();
        } catch (err) {
          // Calls queued behind a failed write fail with it: sent on the next producer,
          // they could land before the failed ones are retried, and break per-key order.
          const behind = queue.splice(0);
          queuedBytes = 0;
          log.warn({ err, calls: batch.length + behind.length }, 'produce failed');
          await resetProducer();
          for (const p of [...batch, ...behind]) p.reject(wrapProduceError(err, p.topic));
        }
      }
    } finally {
      flushing = false;
    }
  }

  function getAdmin(): Promise<Admin> {
    admin ??= (async () => {
      const a = kafka.admin();
      try {
        await a.connect();
      } catch (err) {
        admin = undefined;
        throw err;
      }
      return a;
    })();
    return admin;
  }

  return {
    kind: 'kafka',

    produce(topic, messages) {
      if (closed) return Promise.reject(new OrreryError('BUS_CLOSED', 'the bus is closed', { retriable: false }));
      if (messages.length === 0) return Promise.resolve();
      // A call larger than one request may carry is split into consecutive requests (Kafka
      // refuses a partition batch over max.message.bytes, 1 MiB by default, for good). The
      // parts queue back to back, so order holds; a failed part fails the parts behind it.
      // Sizes are the record batch's as the broker measures it, headers and framing
      // included: dead letters carry more header than value, and counting values alone
      // let a DLQ request pass the limit and be refused on every redelivery (issue #15).
      // kafkajs groups a request by partition and the limit is per partition batch, but
      // which partition a key lands on is the partitioner's, so the whole request counts.
      const sizes = messages.map(recordBytes);
      const tooLarge = sizes.flatMap((size, index) => (RECORD_BATCH_OVERHEAD + size > maxBatchBytes ? [index] : []));
      if (tooLarge.length > 0) {
        const bytes = tooLarge.map((i) => RECORD_BATCH_OVERHEAD + sizes[i]!);
        return Promise.reject(
          new OrreryError(
            'BUS_RECORD_TOO_LARGE',
            `${tooLarge.length} of ${messages.length} messages for ${topic} exceed the record batch limit of ${maxBatchBytes} bytes alone (the largest: ${Math.max(...bytes)} bytes)`,
            { retriable: false, status: 413, details: { topic, indexes: tooLarge, bytes, limit: maxBatchBytes } },
          ),
        );
      }
      const parts: Array<{ messages: OutgoingMessage[]; bytes: number }> = [];
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
    },

    async consume(c: ConsumeOptions): Promise<Subscription> {
      const consumer: Consumer = kafka.consumer({
        groupId: c.group,
        allowAutoTopicCreation: false,
        ...(opts.fetchMinBytes !== undefined ? { minBytes: opts.fetchMinBytes } : {}),
        ...(opts.fetchMaxWaitMs !== undefined ? { maxWaitTimeInMs: opts.fetchMaxWaitMs } : {}),
        // Consumers keep trying for longer: they have nothing better to do than wait. And
        // after running out of retries they restart (kafkajs's default gives up, leaving a
        // live process that consumes nothing). A handler's errors reach kafkajs as
        // BatchRedelivery, which is always retriable: see there.
        retry: { ...(opts.retry ?? { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 }), restartOnFailure: async () => true },
      });
      const commit = commitCoalescer();
      let joined!: () => void;
      const ready = new Promise<void>((resolve) => (joined = resolve));
      const tracker = createProgressTracker();
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        // Partitions handed to another member are no longer this one's to report.
        const assigned = e.payload.memberAssignment;
        tracker.retain((topic, partition) => assigned[topic]?.includes(partition) ?? false);
        joined();
      });
      consumer.on(consumer.events.CRASH, (e) => {
        log.error({ err: e.payload.error, group: c.group, restart: e.payload.restart }, 'consumer crashed');
        c.onError?.(e.payload.error);
      });
      await consumer.connect();
      await consumer.subscribe({ topics: c.topics, fromBeginning: c.fromBeginning ?? false });
      await consumer.run({
        autoCommit: false,
        partitionsConsumedConcurrently: Math.max(1, c.concurrency ?? 1),
        eachBatchAutoResolve: false,
        eachBatch: async function handleKafkaBatch({ batch, heartbeat, resolveOffset, commitOffsetsIfNecessary }) {
          if (batch.messages.length === 0) return;
          const incoming: IncomingBatch = {
            topic: batch.topic,
            partition: batch.partition,
            heartbeat,
            messages: batch.messages.map((m) => ({
              topic: batch.topic,
              partition: batch.partition,
              offset: m.offset,
              key: m.key ? m.key.toString('utf8') : null,
              value: m.value,
              headers: Object.fromEntries(
                Object.entries(m.headers ?? {}).flatMap(([k, v]) => (v === undefined ? [] : [[k, String(Array.isArray(v) ? v[0] : v)]])),
              ),
              timestamp: Number(m.timestamp),
            })),
          };
          try {
            await c.handle(incoming);
          } catch (err) {
            const offset = batch.firstOffset() ?? incoming.messages[0]!.offset;
            tracker.failed(batch.topic, batch.partition, offset, err);
            c.onError?.(err);
            throw new BatchRedelivery(`${batch.topic}[${batch.partition}] at offset ${offset}: ${(err as Error)?.message ?? String(err)}`, err);
          }
          // resolveOffset moves kafkajs's fetch position (without it the batch is fetched
          // again). The commit goes through the batch's own commit function: consumer.
          // commitOffsets silently does nothing once stop() has begun, which would lose the
          // commit of the batch that stop() waits for.
          resolveOffset(batch.lastOffset());
          const next = (BigInt(batch.lastOffset()) + 1n).toString();
          await commit(batch.topic, batch.partition, next, commitOffsetsIfNecessary);
          tracker.clear(batch.topic, batch.partition);
          await heartbeat();
        },
      });
      const sub: Subscription = {
        ready,
        progress: tracker.progress,
        async stop() {
          subscriptions.delete(sub);
          // disconnect waits for the running eachBatch (and its commit) before leaving.
          await consumer.disconnect();
        },
      };
      subscriptions.add(sub);
      return sub;
    },

    async ensureTopics(specs: TopicSpec[]) {
      const a = await getAdmin();
      const existing = new Set(await a.listTopics());
      const missing = specs.filter((s) => !existing.has(s.topic));
      if (missing.length === 0) return;
      try {
        await a.createTopics({ topics: missing, waitForLeaders: true });
      } catch (err) {
        // Another replica may have created them between our list and create.
        const again = new Set(await a.listTopics());
        if (missing.some((s) => !again.has(s.topic))) throw err;
      }
      log.info({ topics: missing.map((s) => s.topic) }, 'created topics');
    },

    async lag(group, topic) {
      const a = await getAdmin();
      const [high, committed] = await Promise.all([a.fetchTopicOffsets(topic), a.fetchOffsets({ groupId: group, topics: [topic] })]);
      const done = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
      let total = 0n;
      for (const p of high) {
        const end = BigInt(p.high);
        const at = done.get(p.partition) ?? -1n;
        // -1: nothing committed yet, so the whole partition (from its low watermark) is lag.
        total += at < 0n ? end - BigInt(p.low) : end - at;
      }
      return Number(total);
    },

    async ping() {
      try {
        const a = await getAdmin();
        const cluster = await a.describeCluster();
        return cluster.brokers.length > 0;
      } catch {
        return false;
      }
    },

    async close() {
      if (closed) return;
      closed = true;
      if (lingerTimer) {
        clearTimeout(lingerTimer);
        lingerTimer = undefined;
      }
      // Drain: whatever was queued before close still gets its answer.
      while (flushing || queue.length > 0) {
        if (!flushing) await flush();
        else await new Promise((r) => setTimeout(r, 5));
      }
      await Promise.all([...subscriptions].map((s) => s.stop()));
      await producer?.disconnect().catch(() => {});
      if (admin) await (await admin.catch(() => undefined))?.disconnect().catch(() => {});
    },
  };
}
