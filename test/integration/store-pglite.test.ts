import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPgliteStore } from '../../core/store/pglite.ts';
import { storeContract } from '../contracts/store.ts';
import { testLogger } from '../helpers/index.ts';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'orrery-pglite-'));
  dirs.push(dir);
  return dir;
}

storeContract('pglite', async () => createPgliteStore({ dir: await tempDir(), logger: testLogger() }));

describe('pglite store on disk', () => {
  it('keeps committed rows across a reopen, and one process at a time holds the directory', async () => {
    const dir = await tempDir();
    const store = await createPgliteStore({ dir, logger: testLogger() });
    await store.query('create table kept (v text)');
    await store.query('insert into kept values ($1)', ['one']);
    await expect(createPgliteStore({ dir, logger: testLogger() })).rejects.toMatchObject({ code: 'STORE_LOCKED' });
    await store.close();

    const again = await createPgliteStore({ dir, logger: testLogger() });
    try {
      const { rows } = await again.query<{ v: string }>('select v from kept');
      expect(rows).toEqual([{ v: 'one' }]);
    } finally {
      await again.close();
    }
  });
});

// Runs after the suite's own afterAll has closed the store.
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
