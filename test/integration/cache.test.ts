import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createMemoryCache } from '../../core/cache/memory.ts';
import { createRedisCache } from '../../core/cache/redis.ts';
import { createSqliteCache } from '../../core/cache/sqlite.ts';
import { cacheContract } from '../contracts/cache.ts';
import { serviceEnv, uniqueName } from '../helpers/index.ts';

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
