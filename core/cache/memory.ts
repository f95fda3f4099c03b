import type { Cache, TakeResult, TokenBucket } from './types.ts';
import { createLocalBuckets } from './token-bucket.ts';

/**
 * The in-process cache: for a single process, and for tests of code above the interface.
 * Expired keys are swept lazily on access and by a periodic sweep.
 *
 * @example const cache = createMemoryCache();
 */
export function createMemoryCache(opts: { now?: () => number; sweepIntervalMs?: number } = {}): Cache {
  const now = opts.now ?? Date.now;
  const values = new Map<string, { value: string; expiresAt: number }>();
  const buckets = createLocalBuckets(now);
  const sweep = setInterval(function sweepExpired() {
    const t = now();
    for (const [k, v] of values) if (v.expiresAt <= t) values.delete(k);
  }, opts.sweepIntervalMs ?? 30_000);
  sweep.unref();

  function live(key: string): string | null {
    const entry = values.get(key);
    if (!entry) return null;
    if (entry.expiresAt <= now()) {
      values.delete(key);
      return null;
    }
    return entry.value;
  }

  function setIfAbsentSync(key: string, ttlMs: number): boolean {
    if (live(key) !== null) return false;
    values.set(key, { value: '1', expiresAt: now() + ttlMs });
    return true;
  }

  return {
    kind: 'memory',
    async setIfAbsent(key, ttlMs) {
      return setIfAbsentSync(key, ttlMs);
    },
    async setManyIfAbsent(keys, ttlMs) {
      return keys.map((k) => setIfAbsentSync(k, ttlMs));
    },
    async hasMany(keys) {
      return keys.map((k) => live(k) !== null);
    },
    async get(key) {
      return live(key);
    },
    async set(key, value, ttlMs) {
      values.set(key, { value, expiresAt: ttlMs === undefined ? Number.POSITIVE_INFINITY : now() + ttlMs });
    },
    async del(key) {
      values.delete(key);
      buckets.delete(key);
    },
    async take(key: string, bucket: TokenBucket, cost = 1): Promise<TakeResult> {
      return buckets.take(key, bucket, cost);
    },
    async ping() {
      return true;
    },
    async close() {
      clearInterval(sweep);
      values.clear();
      buckets.clear();
    },
  };
}
