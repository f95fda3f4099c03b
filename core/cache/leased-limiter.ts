import type { TakeResult, TokenBucket } from './types.ts';

type Take = (key: string, bucket: TokenBucket, cost?: number) => Promise<TakeResult>;

/**
 * A rate limiter that takes tokens from the shared bucket (Redis) in leases and spends them
 * locally, so that most requests cost no round trip. A replica holds at most `leaseTokens`
 * unspent tokens per key, for at most `leaseMs`: the shared limit can be exceeded by that
 * much per replica, briefly, which is the usual price of not asking Redis every time.
 * When a full lease is refused, the exact cost is tried, so a nearly empty bucket still
 * serves small requests.
 *
 * @example const limiter = createLeasedLimiter(cache.take.bind(cache), { leaseTokens: 100, leaseMs: 1_000 });
 */
export function createLeasedLimiter(take: Take, opts: { leaseTokens: number; leaseMs: number; now?: () => number }): { take: Take } {
  const now = opts.now ?? Date.now;
  const leases = new Map<string, { tokens: number; until: number }>();
  const inflight = new Map<string, Promise<unknown>>();

  async function takeLeased(key: string, bucket: TokenBucket, cost = 1): Promise<TakeResult> {
    // One lease request per key at a time: concurrent requests wait for it, then spend it.
    while (inflight.has(key)) await inflight.get(key);
    const lease = leases.get(key);
    if (lease && lease.until > now() && lease.tokens >= cost) {
      lease.tokens -= cost;
      return { allowed: true, remaining: lease.tokens, retryAfterMs: 0, resetMs: 0 };
    }
    const size = Math.min(bucket.capacity, Math.max(cost, opts.leaseTokens));
    const request = (async () => {
      let result = await take(key, bucket, size);
      let granted = size;
      if (!result.allowed && size > cost) {
        result = await take(key, bucket, cost);
        granted = cost;
      }
      if (result.allowed) leases.set(key, { tokens: granted - cost, until: now() + opts.leaseMs });
      return result;
    })();
    inflight.set(key, request);
    try {
      return await request;
    } finally {
      inflight.delete(key);
    }
  }

  return { take: takeLeased };
}

/**
 * A limiter that lets requests through while the shared bucket cannot be reached
 * (Redis down): availability over the rate limit, as the router goes on without dedup.
 * Refusing would turn a cache outage into lost traffic, since SDKs drop what they cannot
 * send once their retries end. `onUnavailable` hears each failure (the caller logs the
 * first of an outage and counts them); `onRecovered` hears the first success after one.
 *
 * @example const limiter = createFailOpenLimiter(leased.take, { onUnavailable: (err) => log.warn({ err }, 'rate limiter unreachable: not limiting') });
 */
export function createFailOpenLimiter(take: Take, hooks: { onUnavailable(err: unknown): void; onRecovered?(): void }): { take: Take } {
  let down = false;
  return {
    async take(key, bucket, cost = 1) {
      try {
        const result = await take(key, bucket, cost);
        if (down) hooks.onRecovered?.();
        down = false;
        return result;
      } catch (err) {
        down = true;
        hooks.onUnavailable(err);
        return { allowed: true, remaining: 0, retryAfterMs: 0, resetMs: 0 };
      }
    },
  };
}
