import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { testLogger } from '../test/helpers/index.ts';
import { createSpool, type Spool, type SpoolRecord } from './spool.ts';
import { openSpool } from './spool-sqlite.ts';

/** Ingest's spool on SQLite: the contract of ./spool.ts, kill -9, and moving a segment-file spool in. */
let dir: string;
const opened: Spool[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'orrery-spool-sqlite-'));
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

async function spoolAt(maxBytes = 64 * 1024 * 1024): Promise<Spool> {
  const spool = await openSpool({ dir, maxBytes, logger: testLogger() });
  opened.push(spool);
  return spool;
}

const recs = (from: number, to: number, key: string | null = 'k'): SpoolRecord[] => Array.from({ length: to - from + 1 }, (_, i) => ({ key, value: `{"n":${from + i}}` }));
const values = (records: SpoolRecord[]) => records.map((r) => (JSON.parse(r.value) as { n: number }).n);

describe('createSqliteSpool', () => {
  it('peeks oldest first without removing, and commit moves past what was peeked', async () => {
    const spool = await spoolAt();
    expect((await spool.peek(10)).records).toEqual([]);
    await spool.append(recs(1, 3));
    await spool.append([{ key: null, value: 'line\nbreak "quoted" ünïcödé' }, ...recs(5, 5)]);
    expect(spool.depth().records).toBe(5);
    const first = await spool.peek(2);
    expect(values(first.records)).toEqual([1, 2]);
    expect(values((await spool.peek(2)).records)).toEqual([1, 2]);
    await spool.commit(first.cursor);
    const rest = await spool.peek(10);
    expect(rest.records).toEqual([{ key: 'k', value: '{"n":3}' }, { key: null, value: 'line\nbreak "quoted" ünïcödé' }, { key: 'k', value: '{"n":5}' }]);
    await spool.commit(rest.cursor);
    // Committing an old cursor again changes nothing.
    await spool.commit(first.cursor);
    expect(spool.depth()).toEqual({ records: 0, bytes: 0 });
  });

  it('refuses with SPOOL_FULL when maxBytes would be exceeded, writing nothing of that call', async () => {
    const spool = await spoolAt(40);
    await spool.append(recs(1, 2));
    await expect(spool.append(recs(3, 20))).rejects.toMatchObject({ code: 'SPOOL_FULL', status: 503, retriable: true });
    expect(values((await spool.peek(100)).records)).toEqual([1, 2]);
    await spool.commit((await spool.peek(100)).cursor);
    await spool.append(recs(3, 4));
    expect(values((await spool.peek(100)).records)).toEqual([3, 4]);
  });

  it('keeps what was not committed across a restart', async () => {
    const spool = await spoolAt();
    await spool.append(recs(1, 10));
    await spool.append([{ key: 'ü', value: '{"n":11,"s":"ünïcödé"}' }]);
    await spool.commit((await spool.peek(4)).cursor);
    const before = spool.depth();
    await spool.close();
    const reopened = await spoolAt();
    // Bytes as appended (UTF-8, not characters), the same before and after a restart.
    expect(reopened.depth()).toEqual(before);
    expect(before).toEqual({ records: 7, bytes: recs(5, 10).reduce((n, r) => n + r.value.length + 1, 0) + Buffer.byteLength('ü{"n":11,"s":"ünïcödé"}') });
    expect(values((await reopened.peek(100)).records)).toEqual([5, 6, 7, 8, 9, 10, 11]);
  });

  it('answers appends accepted before close, and refuses them after', async () => {
    const spool = await spoolAt();
    const pending = spool.append(recs(1, 3));
    await spool.close();
    await pending;
    await expect(spool.append(recs(4, 4))).rejects.toMatchObject({ code: 'SPOOL_CLOSED', retriable: true });
    expect(values((await (await spoolAt()).peek(100)).records)).toEqual([1, 2, 3]);
  });

  it('every append that resolved is there after kill -9', async () => {
    const module = new URL('./spool-sqlite.ts', import.meta.url).href;
    const script = `
      const { openSpool } = await import(${JSON.stringify(module)});
      const spool = await openSpool({ dir: ${JSON.stringify(dir)}, maxBytes: 1 << 30, logger: { info() {}, warn() {}, error() {} } });
      await Promise.all(Array.from({ length: 200 }, (_, i) => spool.append([{ key: 'k', value: JSON.stringify({ n: i }) }])));
      process.kill(process.pid, 'SIGKILL');`;
    await expect(promisify(execFile)(process.execPath, ['--input-type=module', '-e', script])).rejects.toMatchObject({ signal: 'SIGKILL' });
    expect(values((await (await spoolAt()).peek(1000)).records)).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it('moves the records of a segment-file spool in, oldest first, and deletes its files', async () => {
    // A spool left by an Orrery from before: 12 accepted, the first 2 handed to Kafka.
    const old = await createSpool({ dir, maxBytes: 1 << 20, segmentBytes: 256, logger: testLogger() });
    await old.append(recs(1, 7));
    await old.append(recs(8, 12, null));
    await old.commit((await old.peek(2)).cursor);
    await old.close();
    expect((await readdir(dir)).some((n) => n.endsWith('.seg'))).toBe(true);

    const spool = await spoolAt();
    expect(spool.depth().records).toBe(10);
    const all = await spool.peek(100);
    expect(values(all.records)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(all.records.at(-1)!.key).toBeNull();
    expect((await readdir(dir)).sort()).toEqual(expect.arrayContaining(['spool.sqlite']));
    expect((await readdir(dir)).filter((n) => n.endsWith('.seg') || n === 'head.json')).toEqual([]);
  });
});
