/**
 * The cache and limiter: dedup windows and rate limits. Adapters: Redis (ioredis) and
 * in-process. One contract suite (test/contracts/cache.ts) runs against every adapter.
 */

export interface TokenBucket {
  /** Tokens the bucket holds when full (the burst). */
  capacity: number;
  /** Tokens added per second. */
  refillPerSec: number;
}

export interface TakeResult {
  allowed: boolean;
  /** Tokens left after this take. */
  remaining: number;
  /** When not allowed: ms until enough tokens are back. 0 when allowed. */
  retryAfterMs: number;
  /** ms until the bucket is full again. */
  resetMs: number;
}

export interface Cache {
  readonly kind: string;
  /**
   * Sets `key` only if it is absent, for `ttlMs`. True when this call set it (the first
   * sighting), false when it was already there: the dedup primitive.
   */
  setIfAbsent(key: string, ttlMs: number): Promise<boolean>;
  /** Like setIfAbsent for many keys at once, in one round trip where the adapter can. */
  setManyIfAbsent(keys: string[], ttlMs: number): Promise<boolean[]>;
  /** Whether each key is present, in one round trip where the adapter can. */
  hasMany(keys: string[]): Promise<boolean[]>;
  get(key: string): Promise<string | null>;
  set(key: string, value: string, ttlMs?: number): Promise<void>;
  del(key: string): Promise<void>;
  /** Takes `cost` tokens from the bucket at `key`, atomically. */
  take(key: string, bucket: TokenBucket, cost?: number): Promise<TakeResult>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}
