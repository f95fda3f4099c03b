import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createMemoryCache } from '../../core/cache/memory.ts';
import { createRedisCache } from '../../core/cache/redis.ts';
import { createSqliteCache, migrateCacheFile } from '../../core/cache/sqlite.ts';
import { cacheContract } from '../contracts/cache.ts';
import { serviceEnv, testLogger, uniqueName } from '../helpers/index.ts';

cacheContract('redis', async () => createRedisCache({ url: serviceEnv('REDIS_URL'), keyPrefix: `${uniqueName('t')}:` }));
cacheContract('memory', async () => createMemoryCache());
cacheContract('sqlite', async () => createSqliteCache({ path: join(await mkdtemp(join(tmpdir(), 'orrery-cache-')), 'cache.sqlite') }));

describe('sqlite cache: marks survive kill -9', () => {
  it('marks a process wrote, then was SIGKILLed right after, are there when the file is opened again', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'orrery-cache-')), 'cache.sqlite');
    const module = new URL('../../core/cache/sqlite.ts', import.meta.url).href;
    // The child resolves its write, then dies with no chance to close or flush anything.
    const script = `
      const { createSqliteCache } = await import(${JSON.stringify(module)});
      const cache = createSqliteCache({ path: ${JSON.stringify(path)} });
      const keys = Array.from({ length: 500 }, (_, i) => 'mark:' + i);
      for (let i = 0; i < keys.length; i += 50) await cache.setManyIfAbsent(keys.slice(i, i + 50), 60_000);
      process.kill(process.pid, 'SIGKILL');`;
    const child = promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
    await expect(child).rejects.toMatchObject({ signal: 'SIGKILL' });
    const cache = createSqliteCache({ path });
    try {
      const keys = Array.from({ length: 500 }, (_, i) => `mark:${i}`);
      expect((await cache.hasMany(keys)).filter(Boolean)).toHaveLength(500);
      expect(await cache.setManyIfAbsent(['mark:0', 'mark:new'], 60_000)).toEqual([false, true]);
    } finally {
      await cache.close();
    }
  });
});

describe('sqlite cache: moving a cache file of its own into the shared file', () => {
  it('carries the live marks over, drops the expired ones, and removes the old file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orrery-cache-'));
    const from = join(dir, 'cache.sqlite');
    const to = join(dir, 'orrery.sqlite');
    let t = 1_000_000;
    const old = createSqliteCache({ path: from, now: () => t });
    await old.setManyIfAbsent(['live:1', 'live:2'], 60_000);
    await old.setManyIfAbsent(['short:1'], 10);
    await old.close();
    const shared = createSqliteCache({ path: to, now: () => t });
    await shared.setManyIfAbsent(['live:2', 'already:1'], 60_000);
    await shared.close();

    t += 1_000;
    migrateCacheFile({ from, to, logger: testLogger(), now: () => t });
    expect(existsSync(from)).toBe(false);
    const cache = createSqliteCache({ path: to, now: () => t });
    try {
      expect(await cache.hasMany(['live:1', 'live:2', 'already:1', 'short:1'])).toEqual([true, true, true, false]);
    } finally {
      await cache.close();
    }
    // Nothing left to move: a second start does nothing.
    migrateCacheFile({ from, to, logger: testLogger() });
  });
});
