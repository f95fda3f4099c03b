import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { settleHeap } from './heap.ts';

describe('settleHeap', () => {
  it('collects garbage that no allocation would have collected yet', () => {
    // ~40 MiB of short-lived strings, dropped before the collection.
    let garbage: string[] | undefined = Array.from({ length: 400_000 }, (_, i) => `${i}`.padStart(100, 'x'));
    expect(garbage.length).toBe(400_000);
    garbage = undefined;
    const s = settleHeap();
    expect(s.heapUsedBefore - s.heapUsedAfter).toBeGreaterThan(20 * 2 ** 20);
    expect(s.ms).toBeGreaterThanOrEqual(0);
  });

  it('leaves no gc function behind, on the global object or in new contexts', () => {
    settleHeap();
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    expect(runInNewContext('typeof gc')).toBe('undefined');
  });
});
