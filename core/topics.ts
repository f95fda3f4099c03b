import { ConfigError } from './errors.ts';

/**
 * Every Kafka topic name Orrery uses, in one place. Orrery creates its topics itself at
 * start (`ensureTopics` on the bus); broker auto-create stays off.
 *
 * The prefix (`kafka.topicPrefix`, default `orrery`) lets several installations (or test
 * runs) share one cluster.
 */
export interface TopicNames {
  /** Everything ingest accepted, as envelopes, keyed by `sourceId:userId|anonymousId`. */
  raw: string;
  /** Poison events and events no stage could handle, with the reason in headers. */
  dlq: string;
  /** One topic per destination, same key as raw. */
  destination(destinationId: string): string;
}

export const DEFAULT_TOPIC_PREFIX = 'orrery';

/** Kafka topic names allow [a-zA-Z0-9._-], at most 249 characters. */
const LEGAL = /^[a-zA-Z0-9._-]+$/;

export function assertTopicSafe(part: string): string {
  if (!LEGAL.test(part) || part.length > 200) {
    throw new ConfigError(`"${part}" cannot be part of a Kafka topic name: use [a-zA-Z0-9._-], at most 200 characters`);
  }
  return part;
}


export function topicNames(prefix: string = DEFAULT_TOPIC_PREFIX): TopicNames {
  assertTopicSafe(prefix);
  return {
    raw: `${prefix}.events.raw`,
    dlq: `${prefix}.events.dlq`,
    destination: (destinationId: string): string => `${prefix}.dest.${assertTopicSafe(destinationId)}`,
  };
}

/** The names with the default prefix. */
export const Topics: TopicNames = topicNames();

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
export function coreTopicSpecs(names: TopicNames, settings: TopicSettings): TopicSpec[] {
  return [names.raw, names.dlq].map((topic) => ({
    topic,
    numPartitions: settings.partitions,
    replicationFactor: settings.replicationFactor,
  }));
}
