import { appendFile, mkdtemp, open, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { OrreryError } from '../core/errors.ts';
import { testLogger, waitFor } from '../test/helpers/index.ts';
import { createSpool, type Spool, type SpoolRecord } from './spool.ts';

const logger = testLogger();
let dir: string;
const opened: Spool[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'orrery-spool-'));
});

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(opened.splice(0).map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

async function spoolAt(opts: { maxBytes?: number; segmentBytes?: number; at?: string } = {}): Promise<Spool> {
  const spool = await createSpool({
    dir: opts.at ?? dir,
    maxBytes: opts.maxBytes ?? 64 * 1024 * 1024,
    ...(opts.segmentBytes === undefined ? {} : { segmentBytes: opts.segmentBytes }),
    logger,
  });
  opened.push(spool);
  return spool;
}

function recs(from: number, to: number, key: string | null = 'k'): SpoolRecord[] {
  return Array.from({ length: to - from + 1 }, (_, i) => ({ key, value: `{"n":${from + i}}` }));
}

function values(records: SpoolRecord[]): number[] {
  return records.map((r) => (JSON.parse(r.value) as { n: number }).n);
}

async function segmentFiles(): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.endsWith('.seg')).sort();
}

/** FileHandle is not exported, so reach its prototype through an instance. */
async function fileHandlePrototype(): Promise<{ sync: () => Promise<void>; write: (...args: unknown[]) => Promise<unknown> }> {
  const fh = await open(join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(fh) as { sync: () => Promise<void>; write: (...args: unknown[]) => Promise<unknown> };
  await fh.close();
  return proto;
}

describe('createSpool', () => {
  it('peeks oldest first without removing, and commit moves past what was peeked', async () => {
    const spool = await spoolAt();
    expect(await spool.peek(10)).toMatchObject({ records: [] });
    await spool.append(recs(1, 3));
    await spool.append([{ key: null, value: 'line\nbreak "quoted" ünïcödé' }, ...recs(5, 5)]);
    expect(spool.depth().records).toBe(5);

    const first = await spool.peek(2);
    expect(values(first.records)).toEqual([1, 2]);
    expect(values((await spool.peek(2)).records)).toEqual([1, 2]);
    await spool.commit(first.cursor);
    expect(spool.depth().records).toBe(3);

    const rest = await spool.peek(10);
    expect(rest.records[0]).toEqual({ key: 'k', value: '{"n":3}' });
    expect(rest.records[1]).toEqual({ key: null, value: 'line\nbreak "quoted" ünïcödé' });
    expect(rest.records[2]).toEqual({ key: 'k', value: '{"n":5}' });
    await spool.commit(rest.cursor);
    // Committing an old cursor again changes nothing.
    await spool.commit(first.cursor);
    expect(spool.depth()).toEqual({ records: 0, bytes: 0 });
    expect((await spool.peek(10)).records).toEqual([]);
  });

  it('creates a missing directory', async () => {
    const nested = join(dir, 'a', 'b', 'spool');
    const spool = await spoolAt({ at: nested });
    await spool.append(recs(1, 1));
    expect((await stat(nested)).isDirectory()).toBe(true);
    expect((await readdir(nested)).filter((f) => f.endsWith('.seg'))).toHaveLength(1);
  });

  it('group-commits appends queued while a write is in flight: one write and one fsync for all of them', async () => {
    const spool = await spoolAt();
    await spool.append(recs(0, 0)); // creates the segment (and fsyncs the directory) first
    const proto = await fileHandlePrototype();
    const realSync = proto.sync;
    const sync = vi.spyOn(proto, 'sync').mockImplementation(async function slowSync(this: unknown) {
      await new Promise((r) => setTimeout(r, 150));
      return realSync.call(this);
    });
    const write = vi.spyOn(proto, 'write');

    const firstAppend = spool.append(recs(1, 1));
    await waitFor(() => sync.mock.calls.length === 1, { intervalMs: 2, what: 'the first fsync' });
    const queued = Array.from({ length: 20 }, (_, i) => spool.append(recs(i + 2, i + 2)));
    await Promise.all([firstAppend, ...queued]);

    expect(sync).toHaveBeenCalledTimes(2);
    expect(write).toHaveBeenCalledTimes(2);
    expect(values((await spool.peek(100)).records)).toEqual(Array.from({ length: 22 }, (_, i) => i));
  });

  it('appends made in one turn share a single write and fsync', async () => {
    const spool = await spoolAt();
    await spool.append(recs(0, 0));
    const proto = await fileHandlePrototype();
    const sync = vi.spyOn(proto, 'sync');
    await Promise.all(Array.from({ length: 50 }, (_, i) => spool.append(recs(i + 1, i + 1))));
    expect(sync).toHaveBeenCalledTimes(1);
    expect(values((await spool.peek(100)).records)).toEqual(Array.from({ length: 51 }, (_, i) => i));
  });

  it('rotates segments and frees only fully delivered ones', async () => {
    const spool = await spoolAt({ segmentBytes: 100 });
    for (let n = 1; n <= 12; n++) await spool.append(recs(n, n));
    const files = await segmentFiles();
    expect(files.length).toBeGreaterThan(3);
    expect(files[0]).toMatch(/^\d{12}\.seg$/);
    const bytesBefore = spool.depth().bytes;

    const some = await spool.peek(5);
    expect(values(some.records)).toEqual([1, 2, 3, 4, 5]);
    await spool.commit(some.cursor);
    const left = await segmentFiles();
    expect(left.length).toBeLessThan(files.length);
    expect(left.length).toBeGreaterThan(0);
    expect(spool.depth().bytes).toBeLessThan(bytesBefore);

    const rest = await spool.peek(100);
    expect(values(rest.records)).toEqual([6, 7, 8, 9, 10, 11, 12]);
    await spool.commit(rest.cursor);
    expect(await segmentFiles()).toEqual([]);
    expect(spool.depth()).toEqual({ records: 0, bytes: 0 });

    // Ids keep growing after a full drain.
    await spool.append(recs(13, 13));
    const again = await segmentFiles();
    expect(again).toHaveLength(1);
    expect(again[0]! > files.at(-1)!).toBe(true);
  });

  it('recovers everything not committed after a restart, ignoring a torn last record', async () => {
    const crashed = await spoolAt({ segmentBytes: 80 });
    for (let n = 1; n <= 5; n++) await crashed.append(recs(n, n));
    // A crash in the middle of a write: part of a line, never fsync'd, never acknowledged.
    const last = (await segmentFiles()).at(-1)!;
    await appendFile(join(dir, last), '0badc0de ["k","{\\"n\\":6');

    const reopened = await spoolAt({ segmentBytes: 80 });
    expect(reopened.depth().records).toBe(5);
    expect(values((await reopened.peek(100)).records)).toEqual([1, 2, 3, 4, 5]);

    // New appends land after the recovered records, never behind the torn bytes.
    await reopened.append(recs(6, 7));
    await reopened.close();
    const third = await spoolAt({ segmentBytes: 80 });
    expect(values((await third.peek(100)).records)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('skips a damaged record in the middle of a segment', async () => {
    const spool = await spoolAt();
    await spool.append(recs(1, 1));
    await spool.close();
    const seg = (await segmentFiles())[0]!;
    await appendFile(join(dir, seg), '00000000 ["k","garbage"]\n');
    const reopened = await spoolAt();
    await reopened.append(recs(2, 2));
    await reopened.close();
    const third = await spoolAt();
    expect(values((await third.peek(100)).records)).toEqual([1, 2]);
    expect(third.depth().records).toBe(2);
  });

  it('refuses with SPOOL_FULL when maxBytes would be exceeded, writing nothing of that call', async () => {
    const spool = await spoolAt({ maxBytes: 300 });
    await spool.append(recs(1, 2));
    const before = spool.depth();

    const err = await spool.append(recs(3, 20)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OrreryError);
    expect(err).toMatchObject({ code: 'SPOOL_FULL', status: 503, retriable: true });
    expect(spool.depth()).toEqual(before);
    expect(values((await spool.peek(100)).records)).toEqual([1, 2]);

    await spool.close();
    const reopened = await spoolAt({ maxBytes: 300 });
    expect(values((await reopened.peek(100)).records)).toEqual([1, 2]);

    // Delivering frees the space again.
    await reopened.commit((await reopened.peek(100)).cursor);
    await reopened.append(recs(3, 5));
    expect(values((await reopened.peek(100)).records)).toEqual([3, 4, 5]);
  });

  it('persists commits across a restart', async () => {
    const spool = await spoolAt({ segmentBytes: 1024 });
    await spool.append(recs(1, 10));
    const { cursor } = await spool.peek(4);
    await spool.commit(cursor);
    await spool.close();

    const reopened = await spoolAt({ segmentBytes: 1024 });
    expect(reopened.depth().records).toBe(6);
    expect(values((await reopened.peek(100)).records)).toEqual([5, 6, 7, 8, 9, 10]);
  });

  it('answers appends accepted before close, and refuses them after', async () => {
    const spool = await spoolAt();
    const pending = spool.append(recs(1, 3));
    await spool.close();
    await pending;
    await expect(spool.append(recs(4, 4))).rejects.toMatchObject({ code: 'SPOOL_CLOSED', retriable: true });
    const reopened = await spoolAt();
    expect(values((await reopened.peek(100)).records)).toEqual([1, 2, 3]);
  });
});
