import { describe, expect, it } from 'vitest';
import { createProgressTracker, stalledPartitions } from './progress.ts';

describe('stalledPartitions', () => {
  it('counts a partition stalled once the same batch failed often enough for long enough, and not after a success', () => {
    let t = 1_000;
    const tracker = createProgressTracker(() => t);
    const policy = { afterMs: 60_000, minFailures: 3 };
    tracker.failed('raw', 0, '42', new Error('refused'));
    tracker.failed('raw', 0, '42', new Error('refused'));
    t += 120_000;
    // Two failures, however long ago: not yet a stall.
    expect(stalledPartitions(tracker.progress(), policy, t)).toEqual([]);
    tracker.failed('raw', 0, '42', new Error('refused again'));
    expect(stalledPartitions(tracker.progress(), policy, t)).toEqual([{ topic: 'raw', partition: 0, offset: '42', failures: 3, since: 1_000, error: 'refused again' }]);
    // Three quick failures of a batch that only started failing now: not yet a stall.
    tracker.failed('raw', 1, '7', 'x');
    tracker.failed('raw', 1, '7', 'x');
    tracker.failed('raw', 1, '7', 'x');
    expect(stalledPartitions(tracker.progress(), policy, t).map((f) => f.partition)).toEqual([0]);
    tracker.clear('raw', 0);
    expect(stalledPartitions(tracker.progress(), policy, t + 600_000).map((f) => f.partition)).toEqual([1]);
  });

  it('counts afresh when another batch of the partition fails, and forgets partitions this member lost', () => {
    let t = 0;
    const tracker = createProgressTracker(() => t);
    for (let i = 0; i < 5; i++) tracker.failed('raw', 2, '100', 'x');
    t = 10;
    tracker.failed('raw', 2, '250', 'y');
    expect(tracker.progress().failing).toEqual([{ topic: 'raw', partition: 2, offset: '250', failures: 1, since: 10, error: 'y' }]);
    tracker.failed('raw', 3, '0', 'z');
    tracker.retain((_topic, partition) => partition === 3);
    expect(tracker.progress().failing.map((f) => f.partition)).toEqual([3]);
  });
});
