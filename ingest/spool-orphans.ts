import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { hasSpool, openSpool } from './spool-sqlite.ts';

/**
 * Before `orrery start ingest --workers n` forks: worker i replays `<base>/worker-i`, so a
 * spool that no worker of this run would open (the single-process spool in `<base>`, or
 * `worker-j` for j ≥ n, left by a run with more workers) is refused, with the way out,
 * rather than left on disk with acknowledged events in it. An empty one is fine.
 *
 * @example await refuseOrphanSpools({ base: './data/spool', maxBytes, workers: 2, logger });
 */
export async function refuseOrphanSpools(opts: { base: string; maxBytes: number; workers: number; logger: Logger }): Promise<void> {
  const names = await readdir(opts.base).catch(() => [] as string[]);
  const orphans: Array<{ dir: string; workers: number }> = [{ dir: opts.base, workers: 1 }];
  for (const name of names) {
    const m = /^worker-(\d+)$/.exec(name);
    if (m && Number(m[1]) >= opts.workers) orphans.push({ dir: join(opts.base, name), workers: Number(m[1]) + 1 });
  }
  for (const { dir, workers } of orphans) {
    // Checking must not create a spool where there was none.
    if (!(await hasSpool(dir))) continue;
    const spool = await openSpool({ dir, maxBytes: opts.maxBytes, logger: opts.logger });
    const { records } = spool.depth();
    await spool.close();
    if (records > 0) {
      throw new ConfigError(
        `the spool ${dir} holds ${records} events that no worker of ${opts.workers} would replay: start with --workers ${workers} until /readyz says ok (the spool is empty), then with ${opts.workers}`,
      );
    }
  }
}
