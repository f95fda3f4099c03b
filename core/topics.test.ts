import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.ts';
import { coreTopicSpecs, topicNames, Topics } from './topics.ts';

describe('topics', () => {
  it('names the raw, dlq and destination topics', () => {
    expect(Topics.raw).toBe('orrery.events.raw');
    expect(Topics.dlq).toBe('orrery.events.dlq');
    expect(Topics.destination('amplitude-prod')).toBe('orrery.dest.amplitude-prod');
  });

  it('refuses destination ids that are not legal in a topic name', () => {
    expect(() => Topics.destination('a/b')).toThrow(ConfigError);
    expect(() => Topics.destination('')).toThrow(ConfigError);
  });

  it('core specs carry the configured partitions and replication', () => {
    expect(topicNames('acme').raw).toBe('acme.events.raw');
    expect(() => topicNames('a b')).toThrow(ConfigError);
    expect(coreTopicSpecs(Topics, { partitions: 4, replicationFactor: 1 })).toEqual([
      { topic: 'orrery.events.raw', numPartitions: 4, replicationFactor: 1 },
      { topic: 'orrery.events.dlq', numPartitions: 4, replicationFactor: 1 },
    ]);
  });
});
