import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cache } from '../../core/cache/types.ts';
import { uniqueName, waitFor } from '../helpers/index.ts';

/** The contract every cache/limiter adapter keeps. */
export function cacheContract(name: string, makeCache: () => Promise<Cache>): void {
  describe(`cache contract: ${name}`, () => {
    let cache: Cache;
    beforeAll(async () => {
      cache = await makeCache();
    });
    afterAll(async () => {
      await cache.close();
    });

    it('answers ping', async () => {
      expect(await cache.ping()).toBe(true);
    });

    it('setIfAbsent is true only for the first sighting, until the TTL passes', async () => {
      const key = uniqueName('dedup');
      expect(await cache.setIfAbsent(key, 300)).toBe(true);
      expect(await cache.setIfAbsent(key, 300)).toBe(false);
      await waitFor(async () => (await cache.get(key)) === null, { what: 'expiry', timeoutMs: 5_000 });
      expect(await cache.setIfAbsent(key, 300)).toBe(true);
    });

    it('setManyIfAbsent answers per key, and a key repeated in one call counts once', async () => {
      const a = uniqueName('a');
      const b = uniqueName('b');
      await cache.setIfAbsent(a, 60_000);
      expect(await cache.setManyIfAbsent([a, b, b], 60_000)).toEqual([false, true, false]);
      expect(await cache.setManyIfAbsent([], 60_000)).toEqual([]);
    });

    it('setManyIfAbsent marks expire after their TTL', async () => {
      const a = uniqueName('ttl');
      const b = uniqueName('ttl');
      expect(await cache.setManyIfAbsent([a, b], 300)).toEqual([true, true]);
      expect(await cache.hasMany([a, b])).toEqual([true, true]);
      await waitFor(async () => (await cache.hasMany([a, b])).every((x) => !x), { what: 'expiry', timeoutMs: 5_000 });
      expect(await cache.setManyIfAbsent([a], 300)).toEqual([true]);
    });

    it('hasMany answers per key, in order', async () => {
      const a = uniqueName('has');
      const b = uniqueName('has');
      await cache.setIfAbsent(b, 60_000);
      expect(await cache.hasMany([a, b, a])).toEqual([false, true, false]);
      expect(await cache.hasMany([])).toEqual([]);
    });

    it('concurrent setIfAbsent on one key: exactly one wins', async () => {
      const key = uniqueName('race');
      const results = await Promise.all(Array.from({ length: 20 }, () => cache.setIfAbsent(key, 60_000)));
      expect(results.filter(Boolean)).toHaveLength(1);
    });

    it('get, set with and without TTL, del', async () => {
      const key = uniqueName('kv');
      expect(await cache.get(key)).toBeNull();
      await cache.set(key, 'v1');
      expect(await cache.get(key)).toBe('v1');
      await cache.set(key, 'v2', 200);
      expect(await cache.get(key)).toBe('v2');
      await waitFor(async () => (await cache.get(key)) === null, { what: 'expiry', timeoutMs: 5_000 });
      await cache.set(key, 'v3');
      await cache.del(key);
      expect(await cache.get(key)).toBeNull();
    });

    it('token bucket: allows the burst, then refuses with a retry-after, then refills', async () => {
      const key = uniqueName('bucket');
      const bucket = { capacity: 5, refillPerSec: 10 };
      const first = await Promise.all(Array.from({ length: 5 }, () => cache.take(key, bucket)));
      expect(first.every((r) => r.allowed)).toBe(true);
      const refused = await cache.take(key, bucket);
      expect(refused.allowed).toBe(false);
      expect(refused.retryAfterMs).toBeGreaterThan(0);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(100);
      expect(refused.resetMs).toBeGreaterThan(0);
      await waitFor(async () => (await cache.take(key, bucket)).allowed, { what: 'refill', timeoutMs: 5_000 });
    });

    it('token bucket: a cost larger than what is left is refused without taking anything', async () => {
      const key = uniqueName('bucket');
      const bucket = { capacity: 10, refillPerSec: 0.001 };
      expect((await cache.take(key, bucket, 8)).allowed).toBe(true);
      const big = await cache.take(key, bucket, 5);
      expect(big.allowed).toBe(false);
      expect(big.remaining).toBe(2);
      expect((await cache.take(key, bucket, 2)).allowed).toBe(true);
    });
  });
}
