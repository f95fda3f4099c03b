import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { createEmbeddedBus } from '../../core/bus/embedded.ts';
import { busContract } from '../contracts/bus.ts';
import { testLogger } from '../helpers/index.ts';

const dirs: string[] = [];

busContract('embedded', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'orrery-bus-contract-'));
  dirs.push(dir);
  return createEmbeddedBus({ dir, logger: testLogger() });
});

// Runs after the suite's own afterAll has closed the bus.
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
