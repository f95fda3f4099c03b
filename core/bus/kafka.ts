import {
  Kafka,
  Partitioners,
  logLevel as KafkaLogLevel,
  type Admin,
  type Consumer,
  type LogEntry,
  type Producer,
  type RetryOptions as KafkaRetryOptions,
} from 'kafkajs';
import './kafkajs-negative-timeout.ts';
import type { Logger } from '../logger.ts';
import type { TopicSpec } from '../topics.ts';
import { createProgressTracker } from './progress.ts';
import { commitCoalescer, createProduceQueue, kafkaBusCloser, lagOf, UNREACHABLE_CODES, wrapProduceError, type KafkaClientOptions } from './kafka-common.ts';
import { DEFAULT_MAX_BATCH_BYTES } from './record-size.ts';
import type { Bus, ConsumeOptions, IncomingBatch, Subscription } from './types.ts';

export interface KafkaBusOptions extends KafkaClientOptions {
  /**
   * kafkajs retry settings for connections and requests. The default gives up within a few
   * seconds, so that callers with a fallback (ingest's spool) learn of an outage quickly;
   * kafkajs's own default keeps a produce hanging for a minute or more.
   */
  retry?: KafkaRetryOptions;
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
    if (typeof e.code === 'string' && UNREACHABLE_CODES.test(e.code)) return true;
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

  const queue = createProduceQueue({
    logger: log,
    maxBatchBytes,
    maxFlushBytes,
    lingerMs,
    lingerBytes,
    async send(byTopic) {
      const prod = await getProducer();
      await prod.sendBatch({
        topicMessages: [...byTopic].map(([topic, messages]) => ({
          topic,
          messages: messages.map((m) => ({ key: m.key, value: m.value, headers: m.headers ?? {} })),
        })),
        acks: -1,
      });
    },
    reset: resetProducer,
    wrapError: (err, topic) => wrapProduceError(err, topic, isUnavailable(err)),
  });

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
      return queue.produce(topic, messages);
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
      return lagOf(
        high.map((p) => ({ partition: p.partition, low: BigInt(p.low), high: BigInt(p.high) })),
        done,
      );
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

    close: kafkaBusCloser(queue, subscriptions, async () => {
      await producer?.disconnect().catch(() => {});
      if (admin) await (await admin.catch(() => undefined))?.disconnect().catch(() => {});
    }),
  };
}
