import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, describe, expect, it } from 'vitest';
import { createSqliteBus } from '../../core/bus/sqlite.ts';
import type { Bus, IncomingMessage } from '../../core/bus/types.ts';
import { busContract } from '../contracts/bus.ts';
import { testLogger, waitFor } from '../helpers/index.ts';

const dirs: string[] = [];

async function newFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'orrery-bus-sqlite-'));
  dirs.push(dir);
  return join(dir, 'bus.db');
}

busContract('sqlite', async () => createSqliteBus({ file: await newFile(), logger: testLogger() }));

describe('sqlite bus durability', () => {
  async function drain(bus: Bus, topic: string, group: string, want: number): Promise<string[]> {
    const got: IncomingMessage[] = [];
    const sub = await bus.consume({ group, topics: [topic], fromBeginning: true, handle: async (b) => void got.push(...b.messages) });
    await waitFor(() => got.length >= want, { what: `${want} messages` });
    await sub.stop();
    return got.map((m) => m.value!.toString());
  }

  it('keeps produced messages and committed offsets across a reopen', async () => {
    const file = await newFile();
    const spec = [{ topic: 'events', numPartitions: 1, replicationFactor: 1 }];
    let bus = await createSqliteBus({ file, logger: testLogger() });
    await bus.ensureTopics(spec);
    await bus.produce('events', [{ key: 'k', value: 'a' }, { key: 'k', value: 'b' }]);
    await bus.close();

    bus = await createSqliteBus({ file, logger: testLogger() });
    expect(await drain(bus, 'events', 'g', 2)).toEqual(['a', 'b']);
    await bus.produce('events', [{ key: 'k', value: 'c' }]);
    await bus.close();

    bus = await createSqliteBus({ file, logger: testLogger() });
    await bus.ensureTopics(spec);
    expect(await bus.lag!('g', 'events')).toBe(1);
    expect(await drain(bus, 'events', 'g', 1)).toEqual(['c']);
    expect(await bus.lag!('g', 'events')).toBe(0);
    await bus.close();
  });

  it('deletes the records every group has committed, keeping the last one', async () => {
    const file = await newFile();
    const bus = await createSqliteBus({ file, logger: testLogger() });
    await bus.ensureTopics([{ topic: 'events', numPartitions: 1, replicationFactor: 1 }]);
    await bus.produce('events', ['a', 'b', 'c'].map((value) => ({ key: 'k', value })));
    expect(await drain(bus, 'events', 'g', 3)).toEqual(['a', 'b', 'c']);
    const db = new DatabaseSync(file, { readOnly: true });
    const offsets = (): number[] => db.prepare('SELECT offset FROM messages ORDER BY offset').all().map((r) => Number(r.offset));
    await waitFor(() => offsets().length === 1, { what: 'retention' });
    expect(offsets()).toEqual([2]);
    db.close();
    await bus.produce('events', [{ key: 'k', value: 'd' }]);
    expect(await drain(bus, 'events', 'g', 1)).toEqual(['d']);
    await bus.close();
  });
});

afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
