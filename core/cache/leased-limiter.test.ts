import { describe, expect, it } from 'vitest';
import { createFailOpenLimiter, createLeasedLimiter } from './leased-limiter.ts';
import { takeTokens, type BucketState } from './token-bucket.ts';
import type { TokenBucket } from './types.ts';

function sharedBucket(now: () => number) {
  const states = new Map<string, BucketState>();
  let calls = 0;
  return {
    calls: () => calls,
    async take(key: string, bucket: TokenBucket, cost = 1) {
      calls++;
      const { state, result } = takeTokens(states.get(key), now(), bucket, cost);
      states.set(key, state);
      return result;
    },
  };
}

describe('leased limiter', () => {
  it('spends a lease locally: one shared call per lease', async () => {
    let t = 0;
    const shared = sharedBucket(() => t);
    const limiter = createLeasedLimiter(shared.take, { leaseTokens: 50, leaseMs: 1_000, now: () => t });
    const bucket = { capacity: 1_000, refillPerSec: 1 };
    for (let i = 0; i < 100; i++) expect((await limiter.take('k', bucket)).allowed).toBe(true);
    expect(shared.calls()).toBe(2);
  });

  it('never lets more through than the shared bucket allows', async () => {
    let t = 0;
    const shared = sharedBucket(() => t);
    const limiter = createLeasedLimiter(shared.take, { leaseTokens: 30, leaseMs: 1_000, now: () => t });
    const bucket = { capacity: 100, refillPerSec: 0.001 };
    let allowed = 0;
    for (let i = 0; i < 200; i++) if ((await limiter.take('k', bucket)).allowed) allowed++;
    expect(allowed).toBe(100);
  });

  it('falls back to the exact cost when a full lease is refused, and leases expire', async () => {
    let t = 0;
    const shared = sharedBucket(() => t);
    const limiter = createLeasedLimiter(shared.take, { leaseTokens: 50, leaseMs: 100, now: () => t });
    const bucket = { capacity: 60, refillPerSec: 0.001 };
    expect((await limiter.take('k', bucket, 55)).allowed).toBe(true);
    expect((await limiter.take('k', bucket, 5)).allowed).toBe(true);
    t += 1_000;
    const calls = shared.calls();
    expect((await limiter.take('k', bucket, 1)).allowed).toBe(false);
    expect(shared.calls()).toBeGreaterThan(calls);
  });

  it('concurrent takes share one lease request', async () => {
    const shared = sharedBucket(() => 0);
    const limiter = createLeasedLimiter(shared.take, { leaseTokens: 100, leaseMs: 1_000, now: () => 0 });
    const results = await Promise.all(Array.from({ length: 50 }, () => limiter.take('k', { capacity: 1_000, refillPerSec: 1 })));
    expect(results.every((r) => r.allowed)).toBe(true);
    expect(shared.calls()).toBe(1);
  });
});

describe('createFailOpenLimiter', () => {
  const bucket = { capacity: 10, refillPerSec: 1 };
  it('passes the shared answer on, lets requests through while the bucket is unreachable, and says when it is back', async () => {
    let reachable = true;
    const events: string[] = [];
    const limiter = createFailOpenLimiter(
      async (_key, _bucket, cost = 1) => {
        if (!reachable) throw new Error('redis down');
        return { allowed: cost <= 3, remaining: 3 - cost, retryAfterMs: cost <= 3 ? 0 : 1_000, resetMs: 0 };
      },
      { onUnavailable: (err) => events.push(`down: ${(err as Error).message}`), onRecovered: () => events.push('back') },
    );
    expect((await limiter.take('k', bucket, 5)).allowed).toBe(false);
    reachable = false;
    expect((await limiter.take('k', bucket, 5)).allowed).toBe(true);
    expect((await limiter.take('k', bucket, 1)).allowed).toBe(true);
    reachable = true;
    expect((await limiter.take('k', bucket, 5)).allowed).toBe(false);
    expect(events).toEqual(['down: redis down', 'down: redis down', 'back']);
  });
});
