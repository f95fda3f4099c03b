import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testLogger } from '../test/helpers/index.ts';
import { openSpool } from './spool-sqlite.ts';
import { refuseOrphanSpools } from './spool-orphans.ts';

const MAX = 1 << 20;

async function spoolWith(dir: string, records: number): Promise<void> {
  const spool = await openSpool({ dir, maxBytes: MAX, logger: testLogger() });
  if (records > 0) await spool.append(Array.from({ length: records }, (_, i) => ({ key: `k${i}`, value: `{"n":${i}}` })));
  await spool.close();
}

describe('ingest: spools no worker would replay', () => {
  it('refuses a run whose workers would leave acknowledged events in a spool, and names the way out', async () => {
    const base = await mkdtemp(join(tmpdir(), 'orrery-orphans-'));
    const logger = testLogger();
    // Empty spools everywhere: nothing to refuse.
    await spoolWith(base, 0);
    await spoolWith(join(base, 'worker-3'), 0);
    await expect(refuseOrphanSpools({ base, maxBytes: MAX, workers: 2, logger })).resolves.toBeUndefined();

    // A run with 4 workers left events in worker-3: 2 workers would never replay them.
    await spoolWith(join(base, 'worker-3'), 5);
    await spoolWith(join(base, 'worker-1'), 7);
    await expect(refuseOrphanSpools({ base, maxBytes: MAX, workers: 2, logger })).rejects.toThrow(/worker-3 holds 5 events .* --workers 4/);
    // Four workers replay worker-0..3: fine.
    await expect(refuseOrphanSpools({ base, maxBytes: MAX, workers: 4, logger })).resolves.toBeUndefined();

    // The single-process spool (in the base dir itself) needs a run with one process.
    await spoolWith(base, 2);
    await expect(refuseOrphanSpools({ base, maxBytes: MAX, workers: 4, logger })).rejects.toThrow(/holds 2 events .* --workers 1/);
    expect((await readdir(base)).filter((n) => n.startsWith('worker-')).sort()).toEqual(['worker-1', 'worker-3']);
  });
});
