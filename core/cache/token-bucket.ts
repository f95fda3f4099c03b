import type { TakeResult, TokenBucket } from './types.ts';

export interface BucketState {
  tokens: number;
  /** ms since epoch of the last refill. */
  at: number;
}

/**
 * One token-bucket step, pure: refill for the time since `state.at`, then take `cost`
 * if there is enough. The Redis adapter runs the same arithmetic in Lua, so both
 * adapters agree (the cache contract suite checks it).
 *
 * @example takeTokens(undefined, Date.now(), { capacity: 10, refillPerSec: 5 }, 1)
 */
export function takeTokens(
  state: BucketState | undefined,
  now: number,
  bucket: TokenBucket,
  cost = 1,
): { state: BucketState; result: TakeResult } {
  const elapsed = state ? Math.max(0, now - state.at) : 0;
  const before = state ? Math.min(bucket.capacity, state.tokens + (elapsed * bucket.refillPerSec) / 1000) : bucket.capacity;
  const allowed = before >= cost;
  const tokens = allowed ? before - cost : before;
  const msPerToken = 1000 / bucket.refillPerSec;
  return {
    state: { tokens, at: now },
    result: {
      allowed,
      remaining: Math.floor(tokens),
      retryAfterMs: allowed ? 0 : Math.ceil((cost - tokens) * msPerToken),
      resetMs: Math.ceil((bucket.capacity - tokens) * msPerToken),
    },
  };
}

/** Token buckets held in process memory, by key: the in-process limiter of the memory and SQLite caches. */
export function createLocalBuckets(now: () => number) {
  const buckets = new Map<string, BucketState>();
  return {
    take(key: string, bucket: TokenBucket, cost = 1): TakeResult {
      const { state, result } = takeTokens(buckets.get(key), now(), bucket, cost);
      buckets.set(key, state);
      return result;
    },
    delete: (key: string) => void buckets.delete(key),
    clear: () => buckets.clear(),
  };
}
