import { existsSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, describe, expect, it } from 'vitest';
import { createEmbeddedBus } from '../../core/bus/embedded.ts';
import { createSqliteBus, migrateSegmentLog } from '../../core/bus/sqlite.ts';
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

/**
 * A data dir from before the SQLite default holds its log as segment files under bus/. The
 * first start moves it: consumers go on where they were, and nothing is dropped.
 */
describe('moving a segment-file log into SQLite', () => {
  const spec = [
    { topic: 'raw', numPartitions: 2, replicationFactor: 1 },
    { topic: 'dest', numPartitions: 1, replicationFactor: 1 },
  ];

  async function oldDataDir(): Promise<{ from: string; file: string }> {
    const dir = (await newFile()).replace(/bus\.db$/, '');
    const from = join(dir, 'bus');
    // Batches of 2, so that the router's group below commits part of the log.
    const old = await createEmbeddedBus({ dir: from, logger: testLogger(), maxBatchMessages: 2 });
    await old.ensureTopics(spec);
    await old.produce('raw', Array.from({ length: 10 }, (_, i) => ({ key: `u${i % 3}`, value: `r${i}`, headers: { n: String(i) } })));
    await old.produce('dest', [{ key: 'u1', value: 'd0' }]);
    // The router's group has committed one batch; the batches after it fail (not committed). Nothing read 'dest'.
    const got: IncomingMessage[] = [];
    const sub = await old.consume({
      group: 'router',
      topics: ['raw'],
      fromBeginning: true,
      handle: async (b) => {
        if (got.length > 0) throw new Error('not this one');
        got.push(...b.messages);
      },
    });
    await waitFor(() => got.length >= 2, { what: 'a first batch' });
    await sub.stop();
    await old.close();
    return { from, file: join(dir, 'orrery.sqlite') };
  }

  /** What a group reads from the beginning (its committed offsets first), as value@partition/offset. */
  async function readAll(bus: Bus, group: string, topic: string, want: number): Promise<string[]> {
    const got: IncomingMessage[] = [];
    const sub = await bus.consume({ group, topics: [topic], fromBeginning: true, handle: async (b) => void got.push(...b.messages) });
    await waitFor(() => got.length >= want, { what: `${want} messages of ${topic}` });
    await new Promise((r) => setTimeout(r, 300));
    await sub.stop();
    return got.map((m) => `${m.value!.toString()}@${m.partition}/${m.offset}${m.headers?.n ? ` n=${m.headers.n}` : ''} key=${m.key}`).sort();
  }

  it('copies every record with its offset, key and headers, and every committed offset', async () => {
    const { from, file } = await oldDataDir();
    // What the old log would hand the router's group next, read from a copy of it.
    const copy = `${from}-reference`;
    await cp(from, copy, { recursive: true });
    const reference = await createEmbeddedBus({ dir: copy, logger: testLogger() });
    const lag = await reference.lag!('router', 'raw');
    expect(lag).toBe(8);
    const expected = await readAll(reference, 'router', 'raw', lag);
    await reference.close();

    const moved = await migrateSegmentLog({ from, file, logger: testLogger() });
    expect(moved).toEqual({ topics: 2, records: 11 });
    expect(existsSync(from)).toBe(false);
    expect(existsSync(`${from}.migrated`)).toBe(true);

    const bus = await createSqliteBus({ file, logger: testLogger() });
    try {
      await bus.ensureTopics(spec);
      expect(await bus.lag!('router', 'raw')).toBe(lag);
      // The same records at the same offsets: the router's group goes on where it was.
      expect(await readAll(bus, 'router', 'raw', lag)).toEqual(expected);
      // A topic no group had read keeps its record, key and offset; new records follow it.
      const one: IncomingMessage[] = [];
      const sub = await bus.consume({ group: 'peek', topics: ['dest'], fromBeginning: true, handle: async (b) => void one.push(...b.messages) });
      await waitFor(() => one.length === 1, { what: 'the dest record' });
      await sub.stop();
      expect(one[0]).toMatchObject({ key: 'u1', offset: '0' });
      expect(one[0]!.value!.toString()).toBe('d0');
      await bus.produce('dest', [{ key: 'u1', value: 'd1' }]);
      expect(await readAll(bus, 'peek', 'dest', 1)).toEqual(['d1@0/1 key=u1']);
    } finally {
      await bus.close();
    }
    // A second start has nothing left to move.
    expect(await migrateSegmentLog({ from, file, logger: testLogger() })).toBeUndefined();
  });

  it('a start that died between the copy and the rename only renames; a log still in use, or beside a filled one, is left alone', async () => {
    const { from, file } = await oldDataDir();
    // An older Orrery still running on the old log: nothing moves.
    const running = await createEmbeddedBus({ dir: from, logger: testLogger() });
    await expect(migrateSegmentLog({ from, file, logger: testLogger() })).rejects.toMatchObject({ code: 'BUS_LOCKED' });
    await running.close();
    expect(existsSync(from)).toBe(true);

    await migrateSegmentLog({ from, file, logger: testLogger() });
    // As if the process died after the copy's commit, before the rename: the old log is
    // back in place and the copy's marker still set.
    const { rename } = await import('node:fs/promises');
    await rename(`${from}.migrated`, from);
    const db = new DatabaseSync(file);
    db.prepare("INSERT INTO meta (key, value) VALUES ('moving_segment_log', 'x')").run();
    db.close();
    expect(await migrateSegmentLog({ from, file, logger: testLogger() })).toBeUndefined();
    expect(existsSync(from)).toBe(false);
    const bus = await createSqliteBus({ file, logger: testLogger() });
    expect(await bus.lag!('router', 'raw')).toBe(8);
    await bus.close();

    // An older Orrery run again on this data dir writes a new bus/: it is not merged, nor dropped.
    const again = await createEmbeddedBus({ dir: from, logger: testLogger() });
    await again.ensureTopics(spec);
    await again.produce('raw', [{ key: 'u9', value: 'late' }]);
    await again.close();
    await expect(migrateSegmentLog({ from, file, logger: testLogger() })).rejects.toMatchObject({ code: 'BUS_MIGRATION_CONFLICT' });
    expect(existsSync(from)).toBe(true);
  });
});

afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
