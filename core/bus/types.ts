import type { TopicSpec } from '../topics.ts';
import type { ConsumerProgress } from './progress.ts';

/**
 * The bus: what the stages need from Kafka, and no more. Adapters: Kafka (kafkajs) now,
 * an embedded on-disk log later. One contract suite (test/contracts/bus.ts) runs against
 * every adapter.
 */

export interface OutgoingMessage {
  /** Partition key; messages with one key keep their order. */
  key: string | null;
  value: Buffer | string;
  headers?: Record<string, string>;
}

export interface IncomingMessage {
  topic: string;
  partition: number;
  /** Offset as a decimal string (Kafka offsets are 64-bit). */
  offset: string;
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
  /** Broker append time or producer create time, ms since epoch. */
  timestamp: number;
}

/** Messages of one topic partition, in offset order. */
export interface IncomingBatch {
  topic: string;
  partition: number;
  messages: IncomingMessage[];
  /**
   * Tells the group this member is alive. A handler that may run long (retries with
   * backoff) calls it now and then, or the group hands its partitions to someone else.
   */
  heartbeat?: () => Promise<void>;
}

export interface ConsumeOptions {
  group: string;
  topics: string[];
  /** Where a group with no committed offset starts. Default: latest. */
  fromBeginning?: boolean;
  /**
   * Handles one partition's batch. The batch's offsets are committed only after this
   * resolves; if it throws, the batch is delivered again (at least once).
   */
  handle: (batch: IncomingBatch) => Promise<void>;
  /**
   * How many partitions' batches may be handled at once (each partition stays in order,
   * one batch at a time). Default 1. A stage whose batch waits on round trips (Kafka
   * produce, Redis, HTTP) keeps the other partitions moving meanwhile.
   */
  concurrency?: number;
  /** Called when the handler or the consumer fails, before redelivery or restart. */
  onError?: (err: unknown) => void;
}

export interface Subscription {
  /** Resolves once the group has joined and partitions are assigned. */
  ready: Promise<void>;
  /**
   * The partitions whose batch keeps failing, with no success since (./progress.ts): what
   * a stage's readiness looks at to tell a consumer that stopped for good.
   */
  progress(): ConsumerProgress;
  /** Stops fetching, lets the in-flight batch finish and commit, then leaves the group. */
  stop(): Promise<void>;
}

export interface Bus {
  /** Which adapter this is, for logs and /readyz. */
  readonly kind: string;
  /**
   * Appends the messages to `topic`. Resolves only once they are durable (on Kafka:
   * acknowledged by all in-sync replicas). Rejects with a retriable `BUS_UNAVAILABLE`
   * when the bus cannot be reached; nothing that resolved is ever lost.
   */
  produce(topic: string, messages: OutgoingMessage[]): Promise<void>;
  consume(opts: ConsumeOptions): Promise<Subscription>;
  /** Creates the topics that are missing. Existing topics are left as they are. */
  ensureTopics(specs: TopicSpec[]): Promise<void>;
  /** Messages of `topic` the group has not committed yet, over all partitions. */
  lag?(group: string, topic: string): Promise<number>;
  /** True when the bus answered a metadata request just now. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}
