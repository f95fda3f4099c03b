import { Kafka, Partitioners, logLevel, type Admin, type Producer } from 'kafkajs';
import { nowMs, pollUntil, sleep } from './stats.ts';

/**
 * Kafka from the bench's side: topics (created and deleted by the bench), preloading
 * events, and counting what a stage has written (the sum of a topic's high watermarks).
 */

export function kafkaClient(brokers: string, clientId: string): Kafka {
  return new Kafka({
    clientId,
    brokers: brokers.split(','),
    logLevel: logLevel.ERROR,
    logCreator: () => (entry) => process.stderr.write(`[kafkajs ${clientId}] ${entry.log.message}\n`),
  });
}

/**
 * A producer set up as Orrery's bus sets up its own (core/bus/kafka.ts: idempotent, one
 * request in flight, the default partitioner, no topic auto-creation), for the baselines
 * that stand for "what a plain kafkajs producer does".
 */
export function busLikeProducer(kafka: Kafka): Producer {
  return kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: { retries: 4, initialRetryTime: 100, maxRetryTime: 2_000 },
  });
}

/**
 * Topic config for the relay baseline's output topic only: `max.message.bytes` 8 MiB. The
 * relay (bench/children/kafka-relay.ts) re-produces a whole fetched partition batch (up to
 * kafkajs's 1 MiB, re-encoded) in one request, which can pass the broker's default limit.
 * Orrery's own topics (destination, DLQ) keep the broker's defaults: the bus keeps each
 * request under them (issue #15).
 */
export const RELAY_TOPIC_CONFIG: Record<string, string> = { 'max.message.bytes': String(8 * 1024 * 1024) };

export class BenchKafka {
  readonly kafka: Kafka;
  private admin: Admin | undefined;
  private producer: Producer | undefined;
  private readonly created = new Set<string>();

  constructor(brokers: string) {
    this.kafka = kafkaClient(brokers, 'orrery-bench');
  }

  async getAdmin(): Promise<Admin> {
    if (!this.admin) {
      const a = this.kafka.admin();
      await a.connect();
      this.admin = a;
    }
    return this.admin;
  }

  async createTopics(topics: string[], partitions: number, config: Record<string, string> = {}): Promise<void> {
    const admin = await this.getAdmin();
    const configEntries = Object.entries(config).map(([name, value]) => ({ name, value }));
    for (const t of topics) this.created.add(t);
    await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: partitions, replicationFactor: 1, configEntries })), waitForLeaders: false });
    // kafkajs's own wait gives up on "This server does not host this topic-partition",
    // which a busy KRaft broker answers for a moment after the create: poll instead.
    await pollUntil(
      async () => {
        try {
          const { topics: meta } = await admin.fetchTopicMetadata({ topics });
          return meta.every((t) => t.partitions.length === partitions && t.partitions.every((p) => p.leader >= 0)) ? true : undefined;
        } catch {
          return undefined;
        }
      },
      `leaders for ${topics.join(', ')}`,
      30_000,
      200,
    );
  }

  /** Remembers topics that an Orrery process creates, so that cleanup deletes them too. */
  track(...topics: string[]): void {
    for (const t of topics) this.created.add(t);
  }

  /** Messages on the topic: the sum of its partitions' high watermarks (0 when it does not exist yet). */
  async count(topic: string): Promise<number> {
    const admin = await this.getAdmin();
    try {
      const offsets = await admin.fetchTopicOffsets(topic);
      return offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
    } catch {
      return 0;
    }
  }

  /**
   * Writes records to `topic` as fast as kafkajs goes (acks=-1, several requests at once),
   * generating them in slices so that memory stays small.
   */
  async preload(topic: string, total: number, make: (from: number, to: number) => Array<{ key: string; value: string }>, slice = 2_000): Promise<number> {
    // A producer per preload: one that knew a since-deleted topic would ask for its metadata again.
    const producer = this.kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    this.producer = producer;
    const started = nowMs();
    let next = 0;
    const worker = async () => {
      while (next < total) {
        const from = next;
        const to = Math.min(total, from + slice);
        next = to;
        await producer.sendBatch({ topicMessages: [{ topic, messages: make(from, to) }], acks: -1 });
      }
    };
    try {
      await Promise.all(Array.from({ length: 4 }, worker));
    } finally {
      await producer.disconnect().catch(() => undefined);
      this.producer = undefined;
    }
    return nowMs() - started;
  }

  /**
   * Watches `topic` until it holds `target` messages more than `base`. The clock starts at
   * the first poll that sees a message arrive, so a consumer's start (group join) is not
   * counted: events/s = (target − seen at that first poll) ÷ (end − start).
   */
  async watch(topic: string, base: number, target: number, timeoutMs: number, intervalMs = 50): Promise<{ eventsPerSec: number; ms: number; count: number; startCount: number }> {
    let start: { t: number; n: number } | undefined;
    let last = 0;
    let lastChange = nowMs();
    const end = await pollUntil(
      async () => {
        const n = (await this.count(topic)) - base;
        const t = nowMs();
        if (n !== last) lastChange = t;
        last = n;
        if (!start && n > 0) start = { t, n };
        if (n >= target) return { t, n };
        if (start && t - lastChange > 30_000) throw new Error(`${topic}: stuck at ${n}/${target} for 30 s`);
        return undefined;
      },
      `${target} messages on ${topic}`,
      timeoutMs,
      intervalMs,
    );
    const s = start ?? end;
    const ms = end.t - s.t;
    return { eventsPerSec: ms > 0 ? (end.n - s.n) / (ms / 1000) : Number.NaN, ms, count: end.n, startCount: s.n };
  }

  /**
   * The Kafka timestamp (the producer's clock, ms) of every message on `topics` whose
   * messageId starts with `idPrefix`, read from the beginning with a throwaway consumer
   * group, until `expected` were found on each topic or `timeoutMs` passed.
   */
  async timestamps(topics: string[], idPrefix: string, expected: number, timeoutMs: number): Promise<Map<string, Map<string, number>>> {
    const found = new Map(topics.map((t) => [t, new Map<string, number>()]));
    const group = `${topics[0]}.bench-ts-${Date.now().toString(36)}`;
    const consumer = this.kafka.consumer({ groupId: group, allowAutoTopicCreation: false, maxWaitTimeInMs: 250 });
    const re = /"messageId":"([^"]+)"/;
    let done!: () => void;
    const complete = new Promise<void>((r) => (done = r));
    try {
      await consumer.connect();
      await consumer.subscribe({ topics, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          const into = found.get(batch.topic)!;
          for (const m of batch.messages) {
            const id = m.value ? re.exec(m.value.toString('utf8'))?.[1] : undefined;
            if (id?.startsWith(idPrefix) && !into.has(id)) into.set(id, Number(m.timestamp));
          }
          if ([...found.values()].every((f) => f.size >= expected)) done();
        },
      });
      await Promise.race([complete, sleep(timeoutMs)]);
    } finally {
      await consumer.disconnect().catch(() => undefined);
      await this.deleteGroups(group).catch(() => undefined);
    }
    return found;
  }

  /** Deletes every topic this bench created or tracked. Bounded: two tries, a short wait each. */
  async cleanup(keep: boolean, extra: string[] = []): Promise<void> {
    const topics = [...this.created, ...extra];
    this.created.clear();
    if (keep || topics.length === 0) return;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const admin = await this.getAdmin();
        const existing = new Set(await admin.listTopics());
        const doomed = topics.filter((t) => existing.has(t));
        if (doomed.length > 0) await admin.deleteTopics({ topics: doomed, timeout: 10_000 });
        return;
      } catch {
        await sleep(500);
      } finally {
        // The admin remembers the topics it looked at; a fresh one never asks for deleted ones.
        const admin = this.admin;
        this.admin = undefined;
        await admin?.disconnect().catch(() => undefined);
      }
    }
  }

  /** Deletes the consumer groups whose id starts with `prefix` (errors ignored). */
  async deleteGroups(prefix: string): Promise<void> {
    const admin = await this.getAdmin();
    const doomed = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(prefix));
    if (doomed.length > 0) await admin.deleteGroups(doomed).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.producer?.disconnect().catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
  }
}
