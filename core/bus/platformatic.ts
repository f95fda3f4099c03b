/**
 * The bus on Apache Kafka through @platformatic/kafka (2.12.1, pure JS), selected with
 * `kafka.client: platformatic` (env KAFKA_CLIENT). Same contract as ./kafka.ts (kafkajs);
 * the shared parts are in ./kafka-common.ts. What differs from the kafkajs adapter:
 *
 * - Partitioner: the library's default partitioner (`murmur2(key) >>> 0`) is NOT the Java
 *   client's / kafkajs's (`murmur2(key) & 0x7fffffff`): measured over 100,000 keys on 6
 *   partitions, half of them landed elsewhere. This adapter passes its own partitioner with
 *   the Java mask (the library's murmur2 matches Kafka's UtilsTest vectors and kafkajs's), so
 *   a key keeps its partition when the client is switched. Null keys go round robin over all
 *   partitions (kafkajs: over those with a leader).
 * - Consuming: the library's MessagesStream hands out single messages and cannot rewind a
 *   partition, so this adapter runs its own fetch loop on the library's Consumer (group
 *   membership, background heartbeats, fetch, commit, listOffsets). One fetch at a time per
 *   subscription, for every owned partition that is not being handled; a handled batch is
 *   committed before its partition is fetched again. Heartbeats run on a timer in the
 *   library, not in the fetch loop: `IncomingBatch.heartbeat` does nothing, and a handler
 *   that hangs keeps its partitions (kafkajs: the member is evicted after the session
 *   timeout). A failed batch is fetched again after a per-partition backoff (300 ms,
 *   doubling to 10 s) while the other partitions go on; kafkajs restarts the whole consumer.
 * - Group protocol: the library's assignor is called `roundrobin`, kafkajs's
 *   `RoundRobinAssigner`; a group cannot hold members of both clients at once (JoinGroup
 *   fails with INCONSISTENT_GROUP_PROTOCOL). Switching clients means stopping every replica
 *   of a stage, not a rolling update. Committed offsets are the same and carry over.
 * - Defaults: fetch max wait 500 ms when not configured (kafkajs: 5 s; the config sets 20 ms
 *   either way), fetches on their own connections (a long poll does not delay heartbeats and
 *   commits), isolation read_committed (as kafkajs), session 30 s, rebalance 60 s, heartbeat
 *   3 s (kafkajs's). The request timeout of consumers is at least the fetch wait + 5 s.
 *   The library gives JoinGroup no longer timeout than other requests (kafkajs: the
 *   rebalance timeout), so a join blocked by a member that died without leaving times out
 *   and is retried until that member's session expires (not tested here).
 * - Broker outage: the producer retries `retry.retries` times with the same backoff shape as
 *   kafkajs (100 ms doubling to 2 s by default), then `produce` rejects with the retriable
 *   BUS_UNAVAILABLE (network and timeout errors, or any retriable Kafka error code). The
 *   library drops its idempotent producer id after a failed send; this adapter also replaces
 *   the producer, as the kafkajs adapter does. Consumers keep retrying (fetch, join) with
 *   backoff up to 10 s and rejoin the group when the library's own rejoin failed.
 * - Offsets of messages are read from the record batches; timestamps are LogAppendTime when
 *   the topic says so, else create time (as kafkajs).
 */
import { randomInt } from 'node:crypto';
import type { Admin as KafkaAdmin, ClusterMetadata, Consumer as KafkaConsumer, MessageToProduce, Producer as KafkaProducer } from '@platformatic/kafka';
import { importPlatformaticKafka } from './platformatic-import.ts';
import { OrreryError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { TopicSpec } from '../topics.ts';
import { commitCoalescer, createProduceQueue, kafkaBusCloser, lagOf, UNREACHABLE_CODES, wrapProduceError, type CommitFn, type KafkaClientOptions } from './kafka-common.ts';
import { createProgressTracker } from './progress.ts';
import { DEFAULT_MAX_BATCH_BYTES } from './record-size.ts';
import type { Bus, ConsumeOptions, IncomingBatch, IncomingMessage, Subscription } from './types.ts';


// Through the importer: the library's option validators compile when first called, not at import.
const { Admin, ConnectionPool, Consumer, FetchIsolationLevels, findErrorBy, IS_CONTROL, ListOffsetTimestamps, murmur2, ProduceAcks, Producer } = await importPlatformaticKafka();

/** Retries as the kafkajs adapter takes them: a count, and a backoff doubling from `initialRetryTime` to `maxRetryTime`. */
export interface RetrySettings {
  retries?: number;
  initialRetryTime?: number;
  maxRetryTime?: number;
}

export interface PlatformaticBusOptions extends KafkaClientOptions {
  /** Producer and admin retries. Default: 4, 100 ms doubling to 2 s (as the kafkajs adapter). */
  retry?: RetrySettings;
}

type Retry = Required<RetrySettings>;
const DEFAULT_RETRY: Retry = { retries: 4, initialRetryTime: 100, maxRetryTime: 2_000 };
const CONSUMER_RETRY: Retry = { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 };
const JAVA_POSITIVE = 0x7fffffff;
/** Attributes bit of a record batch whose timestamps are the broker's append time. */
const LOG_APPEND_TIME = 0x08;

const backoff = (r: Retry, attempt: number): number => Math.min(r.initialRetryTime * 2 ** Math.max(0, attempt - 1), r.maxRetryTime);

type ErrorLike = { code?: unknown; canRetry?: unknown; cause?: unknown; errors?: unknown };

/**
 * "Not reachable right now" as opposed to a refused request: nothing in the chain is a Kafka
 * error the library marks as not retriable, and something in it is a network error, a
 * timeout, a retriable Kafka error code or a socket error.
 */
function isUnavailable(err: unknown): boolean {
  if (err instanceof Error && findErrorBy(err, 'canRetry', false)) return false;
  const seen = new Set<unknown>();
  const stack: unknown[] = [err];
  while (stack.length > 0) {
    const e = stack.pop() as ErrorLike | undefined;
    if (!e || typeof e !== 'object' || seen.has(e)) continue;
    seen.add(e);
    if (e.code === 'PLT_KFK_NETWORK' || e.code === 'PLT_KFK_TIMEOUT' || e.canRetry === true) return true;
    if (typeof e.code === 'string' && UNREACHABLE_CODES.test(e.code)) return true;
    stack.push(e.cause);
    if (Array.isArray(e.errors)) stack.push(...e.errors);
  }
  return false;
}

/** What Consumer#fetch resolves to (its type is not exported from the package root). */
type FetchResponse = Awaited<ReturnType<KafkaConsumer['fetch']>>;

const pkey = (topic: string, partition: number) => `${partition}\u0000${topic}`;

function toHeaders(pairs: Array<[Buffer | null, Buffer | null]>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of pairs) if (k) out[k.toString('utf8')] = v ? v.toString('utf8') : '';
  return out;
}

/**
 * @example
 *   const bus = createPlatformaticBus({ brokers: ['127.0.0.1:9092'], clientId: 'orrery', logger });
 *   await bus.produce(Topics.raw, [{ key: 'src:u1', value: '{…}' }]);
 */
export function createPlatformaticBus(opts: PlatformaticBusOptions): Bus {
  const log = opts.logger.child({ component: 'bus', adapter: 'kafka', client: 'platformatic' });
  const retry: Retry = { ...DEFAULT_RETRY, ...opts.retry };
  const base = {
    clientId: opts.clientId,
    bootstrapBrokers: opts.brokers,
    connectTimeout: opts.connectionTimeoutMs ?? 3_000,
    timeout: opts.requestTimeoutMs ?? 30_000,
    retries: retry.retries,
    retryDelay: (_client: unknown, _op: string, attempt: number) => backoff(retry, attempt),
  };
  const maxBatchBytes = opts.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
  const maxFlushBytes = Math.min(opts.maxFlushBytes ?? 768 * 1024, maxBatchBytes);
  const fetchMaxWaitMs = opts.fetchMaxWaitMs ?? 500;

  // Java-compatible: murmur2 masked to 31 bits (the library reduces it modulo the partitions).
  const roundRobin = new Map<string, number>();
  function partitioner(message: MessageToProduce, key: Buffer | undefined): number {
    if (key) return murmur2(key) & JAVA_POSITIVE;
    const next = ((roundRobin.get(message.topic) ?? randomInt(JAVA_POSITIVE)) + 1) & JAVA_POSITIVE;
    roundRobin.set(message.topic, next);
    return next;
  }

  let producer: KafkaProducer | undefined;
  let admin: KafkaAdmin | undefined;
  const subscriptions = new Set<Subscription>();

  function getProducer(): KafkaProducer {
    producer ??= new Producer({ ...base, idempotent: true, acks: ProduceAcks.ALL, autocreateTopics: false, partitioner });
    return producer;
  }

  /** As in ./kafka.ts: after a failed send the producer (and its producer id) is replaced. */
  async function resetProducer(): Promise<void> {
    const old = producer;
    producer = undefined;
    await old?.close(true).catch(() => {});
  }

  function getAdmin(): KafkaAdmin {
    admin ??= new Admin(base);
    return admin;
  }

  const queue = createProduceQueue({
    logger: log,
    maxBatchBytes,
    maxFlushBytes,
    lingerMs: opts.lingerMs ?? 0,
    lingerBytes: Math.min(opts.lingerBytes ?? 16 * 1024, maxFlushBytes),
    async send(byTopic) {
      const messages: MessageToProduce[] = [];
      for (const [topic, list] of byTopic) {
        for (const m of list) {
          messages.push({
            topic,
            ...(m.key === null ? {} : { key: Buffer.from(m.key) }),
            value: typeof m.value === 'string' ? Buffer.from(m.value) : m.value,
            headers: new Map(Object.entries(m.headers ?? {}).map(([k, v]) => [Buffer.from(k), Buffer.from(v)])),
          });
        }
      }
      await getProducer().send({ messages, acks: ProduceAcks.ALL, idempotent: true });
    },
    reset: resetProducer,
    wrapError: (err, topic) => wrapProduceError(err, topic, isUnavailable(err)),
  });

  /** Waits until every partition of the topics has a leader (kafkajs's createTopics waitForLeaders). */
  async function waitForLeaders(topics: string[]): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const md = await getAdmin().metadata({ topics, forceUpdate: true }).catch(() => undefined);
      const ready = md && topics.every((t) => {
        const tm = md.topics.get(t);
        return tm && tm.partitions.length === tm.partitionsCount && tm.partitions.every((p) => p && p.leader >= 0);
      });
      if (ready) return;
      if (Date.now() > deadline) throw new OrreryError('BUS_UNAVAILABLE', `no leaders for ${topics.join(', ')}`, { retriable: true, status: 503 });
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function consume(c: ConsumeOptions): Promise<Subscription> {
    const consumerRetry: Retry = { ...CONSUMER_RETRY, ...opts.retry };
    const consumer = new Consumer({
      ...base,
      retries: consumerRetry.retries,
      retryDelay: (_client: unknown, _op: string, attempt: number) => backoff(consumerRetry, attempt),
      // A fetch waits up to fetchMaxWaitMs on the broker: the request must outlast it.
      timeout: Math.max(opts.requestTimeoutMs ?? 30_000, fetchMaxWaitMs + 5_000),
      groupId: c.group,
      autocommit: false,
      sessionTimeout: 30_000,
      rebalanceTimeout: 60_000,
      heartbeatInterval: 3_000,
      minBytes: opts.fetchMinBytes ?? 1,
      maxWaitTime: fetchMaxWaitMs,
      maxBytes: 10 * 1024 * 1024,
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    });
    // Fetches long-poll: on their own connections, so that heartbeats and commits do not queue behind them.
    const fetchPool = new ConnectionPool(opts.clientId, { connectTimeout: base.connectTimeout, requestTimeout: fetchMaxWaitMs + 5_000 });
    const fallback = c.fromBeginning ? ListOffsetTimestamps.EARLIEST : ListOffsetTimestamps.LATEST;
    const concurrency = Math.max(1, c.concurrency ?? 1);
    const tracker = createProgressTracker();
    const commit = commitCoalescer();
    const commitVia: CommitFn = ({ topics }) =>
      consumer.commit({
        offsets: topics.flatMap(({ topic, partitions }) => partitions.map((p) => ({ topic, partition: p.partition, offset: BigInt(p.offset), leaderEpoch: -1 }))),
      });

    /** Next offset to fetch, for each owned partition whose position is known. */
    const positions = new Map<string, bigint>();
    /** Partitions whose batch is queued or being handled: not fetched meanwhile. */
    const busy = new Set<string>();
    /** Failed partitions: when they may be fetched again, and failures in a row. */
    const retryAt = new Map<string, { at: number; failures: number }>();
    let owned: Array<{ topic: string; partition: number }> = [];
    let assignmentChanged = false;
    let needJoin = true;
    let stopping = false;

    let wake: () => void = () => {};
    let woken = new Promise<void>((r) => (wake = r));
    function signal(): void {
      wake();
      woken = new Promise<void>((r) => (wake = r));
    }
    const pause = (ms: number) => Promise.race([woken, new Promise<void>((r) => setTimeout(r, ms).unref())]);

    let joined!: () => void;
    const ready = new Promise<void>((resolve) => (joined = resolve));
    consumer.on('consumer:group:join', () => {
      assignmentChanged = true;
      joined();
      signal();
    });
    // The library emits 'error' when its own rejoin (after a rebalance or a lost membership)
    // failed; it then sends no more heartbeats, so the loop joins again.
    consumer.on('error', (err: unknown) => {
      if (stopping) return;
      log.warn({ err, group: c.group }, 'consumer lost its group membership; joining again');
      c.onError?.(err);
      needJoin = true;
      signal();
    });

    function applyAssignment(): void {
      assignmentChanged = false;
      owned = (consumer.assignments ?? []).flatMap((a) => a.partitions.map((partition) => ({ topic: a.topic, partition })));
      const keys = new Set(owned.map((p) => pkey(p.topic, p.partition)));
      // A partition that stayed with this member keeps its position; one that left is read
      // from its committed offset if it comes back (another member may have moved it).
      for (const k of positions.keys()) if (!keys.has(k)) positions.delete(k);
      for (const k of retryAt.keys()) if (!keys.has(k)) retryAt.delete(k);
      tracker.retain((topic, partition) => keys.has(pkey(topic, partition)));
    }

    function byTopic(parts: Array<{ topic: string; partition: number }>): Map<string, number[]> {
      const m = new Map<string, number[]>();
      for (const p of parts) {
        let list = m.get(p.topic);
        if (!list) m.set(p.topic, (list = []));
        list.push(p.partition);
      }
      return m;
    }

    /** Committed offsets, or the start the subscription asks for where the group has none. */
    async function loadPositions(parts: Array<{ topic: string; partition: number }>, ignoreCommitted = false): Promise<void> {
      const topics = byTopic(parts);
      const committed = ignoreCommitted
        ? new Map<string, bigint[]>()
        : await consumer.listCommittedOffsets({ topics: [...topics].map(([topic, partitions]) => ({ topic, partitions })) });
      const without = parts.filter((p) => (committed.get(p.topic)?.[p.partition] ?? -1n) < 0n);
      const starts = without.length > 0 ? await consumer.listOffsets({ topics: [...byTopic(without).keys()], timestamp: fallback }) : new Map<string, bigint[]>();
      for (const p of parts) {
        const at = committed.get(p.topic)?.[p.partition] ?? -1n;
        const offset = at >= 0n ? at : starts.get(p.topic)?.[p.partition];
        if (offset !== undefined && offset >= 0n) positions.set(pkey(p.topic, p.partition), offset);
      }
    }

    interface Fetched {
      key: string;
      requested: bigint;
      next: bigint;
      batch: IncomingBatch;
    }

    function parse(metadata: ClusterMetadata, response: FetchResponse, requested: Map<string, bigint>): Fetched[] {
      const names = new Map([...metadata.topics].map(([name, t]) => [t.id, name]));
      const out: Fetched[] = [];
      for (const tr of response.responses) {
        const topic = names.get(tr.topicId) ?? tr.topicId;
        for (const pr of tr.partitions) {
          const key = pkey(topic, pr.partitionIndex);
          const from = requested.get(key);
          // An incremental fetch session may answer for partitions not asked for this time.
          if (from === undefined || pr.errorCode !== 0 || !pr.records || pr.records.length === 0) continue;
          let next = from;
          const messages: IncomingMessage[] = [];
          for (const rb of pr.records) {
            const last = rb.firstOffset + BigInt(rb.lastOffsetDelta);
            if (last + 1n > next) next = last + 1n;
            if (rb.attributes & IS_CONTROL) continue;
            for (const r of rb.records) {
              const offset = rb.firstOffset + BigInt(r.offsetDelta);
              if (offset < from) continue;
              messages.push({
                topic,
                partition: pr.partitionIndex,
                offset: offset.toString(),
                key: r.key ? r.key.toString('utf8') : null,
                value: r.value ?? null,
                headers: toHeaders(r.headers),
                timestamp: Number(rb.attributes & LOG_APPEND_TIME ? rb.maxTimestamp : rb.firstTimestamp + r.timestampDelta),
              });
            }
          }
          // The library's heartbeats run on a timer of their own: nothing to do here.
          out.push({ key, requested: from, next, batch: { topic, partition: pr.partitionIndex, messages, heartbeat: async () => {} } });
        }
      }
      return out;
    }

    async function fetchOnce(parts: Array<{ topic: string; partition: number }>): Promise<Fetched[]> {
      const metadata = await consumer.metadata({ topics: c.topics });
      const byNode = new Map<number, Map<string, Array<{ partition: number; fetchOffset: bigint }>>>();
      const nodeParts = new Map<number, Array<{ topic: string; partition: number }>>();
      const requested = new Map<string, bigint>();
      for (const p of parts) {
        const tm = metadata.topics.get(p.topic);
        const leader = tm?.partitions[p.partition]?.leader;
        const offset = positions.get(pkey(p.topic, p.partition));
        if (!tm || leader === undefined || leader < 0 || offset === undefined) continue;
        let node = byNode.get(leader);
        if (!node) byNode.set(leader, (node = new Map()));
        let list = node.get(tm.id);
        if (!list) node.set(tm.id, (list = []));
        list.push({ partition: p.partition, fetchOffset: offset });
        nodeParts.set(leader, [...(nodeParts.get(leader) ?? []), p]);
        requested.set(pkey(p.topic, p.partition), offset);
      }
      const results = await Promise.all(
        [...byNode].map(async ([node, topics]) => {
          const request = [...topics].map(([topicId, ps]) => ({
            topicId,
            partitions: ps.map((p) => ({ ...p, partitionMaxBytes: 1024 * 1024, currentLeaderEpoch: -1, lastFetchedEpoch: -1 })),
          }));
          try {
            const response = await consumer.fetch({ node, topics: request, connectionPool: fetchPool });
            return parse(metadata, response, requested);
          } catch (err) {
            if (!findErrorBy(err as Error, 'apiId', 'OFFSET_OUT_OF_RANGE')) throw err;
            // As kafkajs: a position outside the log starts again where the subscription says.
            const lost = nodeParts.get(node) ?? [];
            log.warn({ group: c.group, partitions: lost }, 'offset out of range; resetting');
            await loadPositions(lost, true);
            return [];
          }
        }),
      );
      return results.flat();
    }

    let handling = 0;
    const waiting: Fetched[] = [];
    const inFlight = new Set<Promise<void>>();

    function dispatch(f: Fetched): void {
      // The assignment moved during the fetch, or the position was reset: not this batch's turn.
      if (positions.get(f.key) !== f.requested) return;
      positions.set(f.key, f.next);
      if (f.batch.messages.length === 0) return; // control records only: nothing to hand over
      busy.add(f.key);
      waiting.push(f);
      startWaiting();
    }

    function startWaiting(): void {
      while (handling < concurrency && waiting.length > 0) {
        const f = waiting.shift()!;
        if (stopping || !positions.has(f.key)) {
          // Stopped, or revoked before its turn: left uncommitted, delivered again later.
          busy.delete(f.key);
          continue;
        }
        handling++;
        const run = handleOne(f).finally(() => {
          handling--;
          busy.delete(f.key);
          inFlight.delete(run);
          startWaiting();
          signal();
        });
        inFlight.add(run);
      }
    }

    function redeliver(f: Fetched, err: unknown): void {
      const first = f.batch.messages[0]!.offset;
      tracker.failed(f.batch.topic, f.batch.partition, first, err);
      c.onError?.(err);
      // Back to the batch's first offset, if the partition is still this member's.
      if (positions.has(f.key)) positions.set(f.key, BigInt(first));
      const failures = (retryAt.get(f.key)?.failures ?? 0) + 1;
      retryAt.set(f.key, { at: Date.now() + backoff(CONSUMER_RETRY, failures), failures });
    }

    async function handleOne(f: Fetched): Promise<void> {
      try {
        await c.handle(f.batch);
      } catch (err) {
        redeliver(f, err);
        return;
      }
      try {
        await commit(f.batch.topic, f.batch.partition, f.next.toString(), commitVia);
      } catch (err) {
        log.warn({ err, group: c.group, topic: f.batch.topic, partition: f.batch.partition }, 'commit failed; the batch will be delivered again');
        redeliver(f, err);
        return;
      }
      tracker.clear(f.batch.topic, f.batch.partition);
      retryAt.delete(f.key);
    }

    async function loop(): Promise<void> {
      let failures = 0;
      consumer.topics.trackAll(...c.topics);
      while (!stopping) {
        try {
          if (needJoin) {
            needJoin = false;
            try {
              await consumer.joinGroup({});
            } catch (err) {
              needJoin = true;
              throw err;
            }
          }
          if (assignmentChanged) applyAssignment();
          const unknown = owned.filter((p) => !positions.has(pkey(p.topic, p.partition)) && !busy.has(pkey(p.topic, p.partition)));
          if (unknown.length > 0) await loadPositions(unknown);
          if (stopping) break;
          if (assignmentChanged) continue;
          const now = Date.now();
          let nextRetry = Infinity;
          const fetchable = owned.filter((p) => {
            const k = pkey(p.topic, p.partition);
            const r = retryAt.get(k);
            if (r && r.at > now) nextRetry = Math.min(nextRetry, r.at);
            return positions.has(k) && !busy.has(k) && !(r && r.at > now);
          });
          if (fetchable.length === 0) {
            await pause(Math.max(1, Math.min(nextRetry - now, 1_000)));
            continue;
          }
          const fetched = await fetchOnce(fetchable);
          if (stopping) break; // fetched, not handed over: not committed, delivered again later
          for (const f of fetched) dispatch(f);
          failures = 0;
        } catch (err) {
          if (stopping) break;
          failures++;
          log.warn({ err, group: c.group, failures }, 'consumer fetch loop failed; retrying');
          c.onError?.(err);
          await pause(backoff(CONSUMER_RETRY, failures));
        }
      }
    }

    const looping = loop();
    const sub: Subscription = {
      ready,
      progress: tracker.progress,
      async stop() {
        if (stopping) return;
        stopping = true;
        subscriptions.delete(sub);
        signal();
        // The fetch in flight ends within its wait; the batches being handled finish and commit.
        await looping;
        await Promise.allSettled([...inFlight]);
        try {
          await consumer.close();
        } catch (err) {
          log.warn({ err, group: c.group }, 'leaving the group failed');
          await consumer.close(true).catch(() => {});
        }
        await fetchPool.close().catch(() => {});
      },
    };
    subscriptions.add(sub);
    return sub;
  }

  return {
    kind: 'kafka',

    produce(topic, messages) {
      return queue.produce(topic, messages);
    },

    consume,

    async ensureTopics(specs: TopicSpec[]) {
      const a = getAdmin();
      const existing = new Set(await a.listTopics());
      const missing = specs.filter((s) => !existing.has(s.topic));
      if (missing.length === 0) return;
      const created = await Promise.allSettled(
        missing.map((s) =>
          a.createTopics({
            topics: [s.topic],
            partitions: s.numPartitions,
            replicas: s.replicationFactor,
            ...(s.configEntries ? { configs: s.configEntries } : {}),
          }),
        ),
      );
      const failed = created.find((r) => r.status === 'rejected');
      if (failed) {
        // Another replica may have created them between our list and create.
        const again = new Set(await a.listTopics());
        if (missing.some((s) => !again.has(s.topic))) throw (failed as PromiseRejectedResult).reason;
      }
      await waitForLeaders(missing.map((s) => s.topic));
      log.info({ topics: missing.map((s) => s.topic) }, 'created topics');
    },

    async lag(group, topic) {
      const a = getAdmin();
      const md = await a.metadata({ topics: [topic] });
      const count = md.topics.get(topic)?.partitionsCount ?? 0;
      const ids = Array.from({ length: count }, (_, i) => i);
      const list = (timestamp: bigint) =>
        a.listOffsets({
          topics: [{ name: topic, partitions: ids.map((partitionIndex) => ({ partitionIndex, timestamp })) }],
          isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED,
        });
      const [high, low, committed] = await Promise.all([
        list(ListOffsetTimestamps.LATEST),
        list(ListOffsetTimestamps.EARLIEST),
        a.listConsumerGroupOffsets({ groups: [{ groupId: group, topics: [{ name: topic, partitionIndexes: ids }] }] }),
      ]);
      const at = (r: typeof high) => new Map((r[0]?.partitions ?? []).map((p) => [p.partitionIndex, p.offset]));
      const highs = at(high);
      const lows = at(low);
      const done = new Map((committed[0]?.topics[0]?.partitions ?? []).map((p) => [p.partitionIndex, p.committedOffset]));
      return lagOf(
        ids.map((partition) => ({ partition, low: lows.get(partition) ?? 0n, high: highs.get(partition) ?? 0n })),
        done,
      );
    },

    ping: () =>
      getAdmin()
        .metadata({ forceUpdate: true })
        .then(
          (md) => md.brokers.size > 0,
          () => false,
        ),

    close: kafkaBusCloser(queue, subscriptions, async () => {
      await producer?.close(true).catch(() => {});
      await admin?.close().catch(() => {});
    }),
  };
}
