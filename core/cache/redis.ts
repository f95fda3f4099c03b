import { Redis } from 'ioredis';
import { OrreryError } from '../errors.ts';
import type { Cache, TakeResult, TokenBucket } from './types.ts';

/**
 * Token bucket in Lua, the same arithmetic as `takeTokens` in token-bucket.ts, run
 * atomically in Redis. Time comes from the Redis server (TIME), so every ingest replica
 * shares one clock. State is a hash {tokens, at} that expires once the bucket would be
 * full again.
 */
const TAKE_LUA = `
local key = KEYS[1]
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', key, 'tokens', 'at')
local tokens = capacity
if s[1] then
  local elapsed = math.max(0, now - tonumber(s[2]))
  tokens = math.min(capacity, tonumber(s[1]) + elapsed * rate / 1000)
end
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
local ms_per_token = 1000 / rate
local reset = math.ceil((capacity - tokens) * ms_per_token)
redis.call('PEXPIRE', key, math.max(1, reset))
local retry = 0
if allowed == 0 then retry = math.ceil((cost - tokens) * ms_per_token) end
return {allowed, math.floor(tokens), retry, reset}
`;

/**
 * SET key 1 PX ttl NX for every key, in one command: a pipeline of one SET per key cost the
 * router and the sinks an ioredis Command object, a parse and a callback per event.
 */
const SET_MANY_NX_LUA = `
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, '1', 'PX', ARGV[1], 'NX') then out[i] = 1 else out[i] = 0 end
end
return out
`;

type RedisWithTake = Redis & {
  orreryTake(key: string, capacity: number, rate: number, cost: number): Promise<[number, number, number, number]>;
  orrerySetManyNx(numberOfKeys: number, ...keysThenTtl: Array<string | number>): Promise<number[]>;
};

/**
 * The cache on Redis through ioredis.
 *
 * @example const cache = createRedisCache({ url: config.redis.url, keyPrefix: 'orrery:' });
 */
export function createRedisCache(opts: { url: string; keyPrefix?: string; connectTimeoutMs?: number; commandTimeoutMs?: number }): Cache {
  const redis = new Redis(opts.url, {
    keyPrefix: opts.keyPrefix ?? 'orrery:',
    lazyConnect: false,
    connectTimeout: opts.connectTimeoutMs ?? 5_000,
    // Fail commands fast while disconnected instead of queueing them without bound: every
    // caller has a way on without Redis (the router and sinks skip dedup, ingest does not
    // limit), and a command that waits out reconnects stalls the whole pipeline (the fault
    // suite's Redis outage measured 71 of 4,000 events taken in 20 s). The offline queue
    // stays for the first connect, so that commands issued at start wait for it.
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    // A command Redis does not answer (a hung server, a dead peer the kernel has not
    // noticed yet) fails after this long rather than holding its caller.
    commandTimeout: opts.commandTimeoutMs ?? 1_000,
    // Commands issued in the same turn of the event loop (concurrent partition batches'
    // dedup calls, concurrent requests' limiter takes) go out in one write: on this kind
    // of machine the write syscalls, not Redis, were the cost.
    enableAutoPipelining: true,
  }) as RedisWithTake;
  redis.defineCommand('orreryTake', { numberOfKeys: 1, lua: TAKE_LUA });
  redis.defineCommand('orrerySetManyNx', { lua: SET_MANY_NX_LUA });
  // ioredis emits 'error' on every failed reconnect; without a listener Node would crash.
  redis.on('error', () => {});

  let connectedOnce = false;
  redis.on('ready', () => (connectedOnce = true));

  async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      // Once it has been connected, a lost connection fails commands at once until it is
      // back, rather than queueing them behind the reconnects.
      if (connectedOnce && redis.status !== 'ready') throw new Error(`not connected (${redis.status})`);
      return await fn();
    } catch (err) {
      throw new OrreryError('CACHE_UNAVAILABLE', `redis ${what} failed: ${(err as Error).message}`, {
        retriable: true,
        cause: err,
        status: 503,
      });
    }
  }

  return {
    kind: 'redis',
    setIfAbsent(key, ttlMs) {
      return call('SET NX', async () => (await redis.set(key, '1', 'PX', ttlMs, 'NX')) === 'OK');
    },
    setManyIfAbsent(keys, ttlMs) {
      if (keys.length === 0) return Promise.resolve([]);
      return call('SET NX (script)', async () => (await redis.orrerySetManyNx(keys.length, ...keys, ttlMs)).map((r) => r === 1));
    },
    hasMany(keys) {
      if (keys.length === 0) return Promise.resolve([]);
      // One MGET: a value (every mark is "1") or nil per key.
      return call('MGET', async () => (await redis.mget(keys)).map((v) => v !== null));
    },
    get(key) {
      return call('GET', () => redis.get(key));
    },
    set(key, value, ttlMs) {
      return call('SET', async () => {
        if (ttlMs === undefined) await redis.set(key, value);
        else await redis.set(key, value, 'PX', ttlMs);
      });
    },
    del(key) {
      return call('DEL', async () => {
        await redis.del(key);
      });
    },
    take(key: string, bucket: TokenBucket, cost = 1): Promise<TakeResult> {
      return call('token bucket', async () => {
        const [allowed, remaining, retryAfterMs, resetMs] = await redis.orreryTake(key, bucket.capacity, bucket.refillPerSec, cost);
        return { allowed: allowed === 1, remaining, retryAfterMs, resetMs };
      });
    },
    async ping() {
      try {
        return (await redis.ping()) === 'PONG';
      } catch {
        return false;
      }
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
