import { ConfigError } from './errors.ts';

/**
 * Every Kafka topic name Orrery uses, in one place. Orrery creates its topics itself at
 * start (see `ensureTopics` on the bus); broker auto-create stays off.
 */
export const TOPIC_PREFIX = 'orrery';

export const Topics = {
  /** Everything ingest accepted, as envelopes, keyed by `sourceId:userId|anonymousId`. */
  raw: `${TOPIC_PREFIX}.events.raw`,
  /** Poison events and events no stage could handle, with the reason in headers. */
  dlq: `${TOPIC_PREFIX}.events.dlq`,
  /** One topic per destination, same key as raw. */
  destination: (destinationId: string): string => `${TOPIC_PREFIX}.dest.${assertTopicSafe(destinationId)}`,
} as const;

/** Kafka topic names allow [a-zA-Z0-9._-], at most 249 characters. */
const LEGAL = /^[a-zA-Z0-9._-]+$/;

export function assertTopicSafe(part: string): string {
  if (!LEGAL.test(part) || part.length > 200) {
    throw new ConfigError(`"${part}" cannot be part of a Kafka topic name: use [a-zA-Z0-9._-], at most 200 characters`);
  }
  return part;
}

export interface TopicSpec {
  topic: string;
  numPartitions: number;
  replicationFactor: number;
  configEntries?: Array<{ name: string; value: string }>;
}

export interface TopicSettings {
  partitions: number;
  replicationFactor: number;
}

/** The topics every Orrery installation has, whatever its destinations. */
export function coreTopicSpecs(settings: TopicSettings): TopicSpec[] {
  return [Topics.raw, Topics.dlq].map((topic) => ({
    topic,
    numPartitions: settings.partitions,
    replicationFactor: settings.replicationFactor,
  }));
}
