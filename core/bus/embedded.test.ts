import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFile, mkdtemp, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { testLogger, waitFor } from '../../test/helpers/index.ts';
import { createEmbeddedBus, type EmbeddedBusOptions } from './embedded.ts';
import type { Bus, IncomingMessage, OutgoingMessage, Subscription } from './types.ts';

const logger = testLogger();
let dir: string;
let opened: Bus[] = [];
let subs: Subscription[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'orrery-embedded-bus-'));
});

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(subs.splice(0).map((s) => s.stop()));
  await Promise.all(opened.splice(0).map((b) => b.close()));
  await rm(dir, { recursive: true, force: true });
});

async function openBus(opts: Partial<EmbeddedBusOptions> = {}): Promise<Bus> {
  const bus = await createEmbeddedBus({ dir, logger, ...opts });
  opened.push(bus);
  return bus;
}

async function reopen(bus: Bus, opts: Partial<EmbeddedBusOptions> = {}): Promise<Bus> {
  await Promise.all(subs.splice(0).map((s) => s.stop()));
  await bus.close();
  opened = opened.filter((b) => b !== bus);
  return openBus(opts);
}

function messages(from: number, to: number, keys = 10): OutgoingMessage[] {
  return Array.from({ length: to - from }, (_, i) => ({ key: `k${(from + i) % keys}`, value: String(from + i), headers: { n: String(from + i) } }));
}

async function consumeInto(bus: Bus, topic: string, group: string, got: IncomingMessage[], fromBeginning = true): Promise<Subscription> {
  const sub = await bus.consume({
    group,
    topics: [topic],
    fromBeginning,
    handle: async (batch) => {
      got.push(...batch.messages);
    },
  });
  subs.push(sub);
  return sub;
}

/** Everything in the topic, read by a fresh group; `count` from lag, so nothing is missed. */
async function readAll(bus: Bus, topic: string): Promise<IncomingMessage[]> {
  const group = `all-${Math.random().toString(36).slice(2)}`;
  const count = await bus.lag!(group, topic);
  const got: IncomingMessage[] = [];
  const sub = await consumeInto(bus, topic, group, got);
  await waitFor(() => got.length >= count, { what: `${count} messages` });
  await sub.stop();
  return got;
}

function values(got: IncomingMessage[]): number[] {
  return got.map((m) => Number(m.value!.toString())).sort((a, b) => a - b);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/** Each partition's offsets, in delivery order, must be 0, 1, 2, … (or start at `from`). */
function expectDenseOffsets(got: IncomingMessage[], from: (partition: number) => number = () => 0): void {
  const byPartition = new Map<number, number[]>();
  for (const m of got) byPartition.set(m.partition, [...(byPartition.get(m.partition) ?? []), Number(m.offset)]);
  for (const [p, offsets] of byPartition) expect(offsets).toEqual(range(from(p), from(p) + offsets.length));
}

async function segmentFiles(topic: string, partition: number): Promise<string[]> {
  return (await readdir(join(dir, topic, String(partition)))).filter((f) => f.endsWith('.log')).sort();
}

describe('createEmbeddedBus', () => {
  it('keeps what produce resolved across a re-open, and offsets continue densely', async () => {
    let bus = await openBus();
    await bus.ensureTopics([{ topic: 't', numPartitions: 3, replicationFactor: 1 }]);
    await bus.produce('t', messages(0, 30));
    expect(bus.kind).toBe('embedded');

    bus = await reopen(bus);
    // An existing topic keeps its partition count.
    await bus.ensureTopics([{ topic: 't', numPartitions: 5, replicationFactor: 1 }]);
    expect(JSON.parse(await readFile(join(dir, 't', 'meta.json'), 'utf8'))).toMatchObject({ partitions: 3 });
    await bus.produce('t', messages(30, 45));

    const got = await readAll(bus, 't');
    expect(values(got)).toEqual(range(0, 45));
    expectDenseOffsets(got);
    expect(new Set(got.map((m) => m.partition))).toEqual(new Set([0, 1, 2]));
    const first = got.find((m) => m.value!.toString() === '7')!;
    expect(first).toMatchObject({ topic: 't', key: 'k7', headers: { n: '7' } });
    expect(typeof first.offset).toBe('string');
    expect(first.timestamp).toBeGreaterThan(Date.now() - 60_000);
  });

  it('ignores a torn record at the end of the log, and appends after it', async () => {
    let bus = await openBus();
    await bus.ensureTopics([{ topic: 't', numPartitions: 1, replicationFactor: 1 }]);
    await bus.produce('t', messages(0, 5));
    const [file] = await segmentFiles('t', 0);
    const path = join(dir, 't', '0', file!);

    const cutShort = Buffer.alloc(20);
    cutShort.writeUInt32BE(100, 0); // claims a 100-byte body that never made it to disk
    const badChecksum = Buffer.alloc(8 + 40, 7);
    badChecksum.writeUInt32BE(40, 0);
    const zeros = Buffer.alloc(64);
    let expected = 5;
    for (const tail of [cutShort, badChecksum, zeros]) {
      await Promise.all(subs.splice(0).map((s) => s.stop()));
      await bus.close();
      opened = opened.filter((b) => b !== bus);
      const intact = (await stat(path)).size;
      await appendFile(path, tail);

      bus = await openBus();
      expect((await stat(path)).size).toBe(intact);
      await bus.produce('t', messages(expected, expected + 1));
      expected++;
      const got = await readAll(bus, 't');
      expect(values(got)).toEqual(range(0, expected));
      expectDenseOffsets(got);
    }
  });

  it('resumes a group from its committed offsets after a re-open', async () => {
    let bus = await openBus();
    await bus.ensureTopics([{ topic: 't', numPartitions: 2, replicationFactor: 1 }]);
    await bus.produce('t', messages(0, 10));
    const first: IncomingMessage[] = [];
    await consumeInto(bus, 't', 'g', first);
    await waitFor(async () => first.length === 10 && (await bus.lag!('g', 't')) === 0, { what: 'first ten committed' });
    expect(await readdir(join(dir, 't', 'groups'))).toContain('g.json');

    bus = await reopen(bus);
    expect(await bus.lag!('g', 't')).toBe(0);
    await bus.produce('t', messages(10, 15));
    const second: IncomingMessage[] = [];
    await consumeInto(bus, 't', 'g', second);
    // Lag only reaches 0 once everything not committed before was handled, so any message
    // redelivered from the first run would be in `second` by then.
    await waitFor(async () => second.length >= 5 && (await bus.lag!('g', 't')) === 0, { what: 'the new five committed' });
    expect(values(second)).toEqual(range(10, 15));
  });

  it('starts a new group at the end of the log unless fromBeginning', async () => {
    const bus = await openBus();
    await bus.ensureTopics([{ topic: 't', numPartitions: 2, replicationFactor: 1 }]);
    await bus.produce('t', messages(0, 6));
    const got: IncomingMessage[] = [];
    const sub = await consumeInto(bus, 't', 'late', got, false);
    await sub.ready;
    await bus.produce('t', messages(6, 9));
    await waitFor(async () => got.length >= 3 && (await bus.lag!('late', 't')) === 0, { what: 'the three new ones' });
    expect(values(got)).toEqual([6, 7, 8]);
  });

  it('splits the partitions between the subscriptions of one group, each message handled once', async () => {
    const bus = await openBus();
    await bus.ensureTopics([{ topic: 't', numPartitions: 4, replicationFactor: 1 }]);
    const seenBy = new Map<number, string[]>();
    // Partitions each member read messages 40..79 from, produced once both had joined.
    const partitionsOf = { a: new Set<number>(), b: new Set<number>() };
    async function member(name: 'a' | 'b'): Promise<Subscription> {
      const sub = await bus.consume({
        group: 'g',
        topics: ['t'],
        fromBeginning: true,
        handle: async (batch) => {
          await new Promise((r) => setImmediate(r));
          for (const m of batch.messages) {
            const v = Number(m.value!.toString());
            seenBy.set(v, [...(seenBy.get(v) ?? []), name]);
            if (v >= 40 && v < 80) partitionsOf[name].add(batch.partition);
          }
        },
      });
      subs.push(sub);
      await sub.ready;
      return sub;
    }

    await member('a');
    await bus.produce('t', messages(0, 40, 20));
    // b joins while a may be in the middle of the first messages: a hands partitions over
    // only after committing what it holds.
    const b = await member('b');
    await bus.produce('t', messages(40, 80, 20));
    await waitFor(() => seenBy.size === 80, { what: 'phase two' });
    expect(partitionsOf.a.size).toBeGreaterThan(0);
    expect(partitionsOf.b.size).toBeGreaterThan(0);
    expect([...partitionsOf.a].filter((p) => partitionsOf.b.has(p))).toEqual([]);

    // b leaves: a takes its partitions back.
    await b.stop();
    await bus.produce('t', messages(80, 120, 20));
    await waitFor(async () => seenBy.size === 120 && (await bus.lag!('g', 't')) === 0, { what: 'phase three' });
    for (const v of range(80, 120)) expect(seenBy.get(v)).toEqual(['a']);
    for (const [v, by] of seenBy) expect({ v, times: by.length }).toEqual({ v, times: 1 });
  });

  it('moves a partition to a new member only after the in-flight batch committed', async () => {
    const bus = await openBus();
    await bus.ensureTopics([{ topic: 't', numPartitions: 2, replicationFactor: 1 }]);
    await bus.produce('t', messages(0, 20));
    const seen: Array<{ by: string; v: number }> = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    subs.push(
      await bus.consume({
        group: 'g',
        topics: ['t'],
        fromBeginning: true,
        handle: async (batch) => {
          started++;
          await gate;
          for (const m of batch.messages) seen.push({ by: 'a', v: Number(m.value!.toString()) });
        },
      }),
    );
    await waitFor(() => started === 2, { what: 'a batch in flight on each partition' });
    const b = await bus.consume({
      group: 'g',
      topics: ['t'],
      fromBeginning: true,
      handle: async (batch) => {
        for (const m of batch.messages) seen.push({ by: 'b', v: Number(m.value!.toString()) });
      },
    });
    subs.push(b);
    await b.ready;
    release();
    await bus.produce('t', messages(20, 30));
    await waitFor(async () => seen.length >= 30 && (await bus.lag!('g', 't')) === 0, { what: 'all handled' });
    expect(seen.map((s) => s.v).sort((x, y) => x - y)).toEqual(range(0, 30));
    expect(seen.filter((s) => s.v < 20).every((s) => s.by === 'a')).toBe(true);
    expect(seen.some((s) => s.by === 'b')).toBe(true);
  });

  it('rejects a topic that does not exist', async () => {
    const bus = await openBus();
    const unknown = { code: 'BUS_UNKNOWN_TOPIC', retriable: false };
    await expect(bus.produce('nope', [{ key: 'k', value: 'v' }])).rejects.toMatchObject(unknown);
    await expect(bus.consume({ group: 'g', topics: ['nope'], handle: async () => {} })).rejects.toMatchObject(unknown);
    await expect(bus.lag!('g', 'nope')).rejects.toMatchObject(unknown);
    await expect(bus.ensureTopics([{ topic: '..', numPartitions: 1, replicationFactor: 1 }])).rejects.toMatchObject({ code: 'BUS_INVALID_TOPIC' });
  });

  it('counts lag per group', async () => {
    const bus = await openBus();
    await bus.ensureTopics([{ topic: 't', numPartitions: 3, replicationFactor: 1 }]);
    expect(await bus.lag!('g', 't')).toBe(0);
    await bus.produce('t', messages(0, 10));
    expect(await bus.lag!('g', 't')).toBe(10);
    const got: IncomingMessage[] = [];
    const sub = await consumeInto(bus, 't', 'g', got);
    await waitFor(async () => (await bus.lag!('g', 't')) === 0, { what: 'lag 0' });
    await sub.stop();
    await bus.produce('t', messages(10, 14));
    expect(await bus.lag!('g', 't')).toBe(4);
    expect(await bus.lag!('other', 't')).toBe(14);
  });

  it('group-commits concurrent produce calls and keeps each key in order', async () => {
    const bus = await openBus();
    await bus.ensureTopics([{ topic: 't', numPartitions: 4, replicationFactor: 1 }]);
    const probe = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
    await probe.close();
    const sync = vi.spyOn(proto, 'sync');

    await Promise.all(range(0, 20).map((n) => bus.produce('t', [{ key: `k${n % 4}`, value: String(n) }])));
    // At most one fsync of each partition's segment and one of its directory (new segment
    // files), instead of one per call.
    expect(sync.mock.calls.length).toBeLessThanOrEqual(8);
    vi.restoreAllMocks();

    const got = await readAll(bus, 't');
    expect(values(got)).toEqual(range(0, 20));
    for (let k = 0; k < 4; k++) {
      const seq = got.filter((m) => m.key === `k${k}`).map((m) => Number(m.value!.toString()));
      expect(seq).toEqual(range(0, 5).map((i) => k + 4 * i));
    }
  });

  it('deletes segments once every group is past them', async () => {
    let bus = await openBus({ segmentBytes: 512 });
    await bus.ensureTopics([{ topic: 't', numPartitions: 1, replicationFactor: 1 }]);
    for (let i = 0; i < 100; i += 5) await bus.produce('t', messages(i, i + 5));
    const before = await segmentFiles('t', 0);
    expect(before.length).toBeGreaterThan(3);

    // A group that is still behind holds every segment it has not read.
    const slow: IncomingMessage[] = [];
    const slowSub = await bus.consume({
      group: 'slow',
      topics: ['t'],
      fromBeginning: true,
      handle: async (batch) => {
        if (slow.length > 0) throw new Error('stuck after the first batch');
        slow.push(...batch.messages);
      },
      onError: () => {},
    });
    await waitFor(async () => (await bus.lag!('slow', 't')) < 100, { what: 'slow committed its first batch' });
    await slowSub.stop();
    const fast: IncomingMessage[] = [];
    await consumeInto(bus, 't', 'fast', fast);
    await waitFor(async () => (await bus.lag!('fast', 't')) === 0, { what: 'fast done' });
    // slow committed one batch, and a batch never spans more than one segment.
    expect((await segmentFiles('t', 0)).length).toBeGreaterThanOrEqual(before.length - 1);

    const rest: IncomingMessage[] = [];
    await consumeInto(bus, 't', 'slow', rest);
    await waitFor(async () => (await bus.lag!('slow', 't')) === 0, { what: 'slow done' });
    await waitFor(async () => (await segmentFiles('t', 0)).length === 1, { what: 'consumed segments deleted' });

    bus = await reopen(bus, { segmentBytes: 512 });
    expect(await bus.lag!('fast', 't')).toBe(0);
    const base = Number((await segmentFiles('t', 0))[0]!.slice(0, 20));
    expect(base).toBeGreaterThan(0);
    await bus.produce('t', messages(100, 103));
    const got = await readAll(bus, 't');
    expect(values(got)).toEqual(range(base, 103));
    expectDenseOffsets(got, () => base);
  });

  it('refuses a directory another bus holds open', async () => {
    const bus = await openBus();
    await expect(createEmbeddedBus({ dir, logger })).rejects.toMatchObject({ code: 'BUS_LOCKED' });
    await bus.close();
    opened = [];
    await openBus();
  });

  it('keeps every acknowledged message when the process is killed mid-stream', async () => {
    const script = `
      const { createEmbeddedBus } = await import(${JSON.stringify(new URL('./embedded.ts', import.meta.url).href)});
      const { createLogger } = await import(${JSON.stringify(new URL('../logger.ts', import.meta.url).href)});
      const bus = await createEmbeddedBus({ dir: process.env.BUS_DIR, logger: createLogger({ level: 'silent' }), segmentBytes: 4096 });
      await bus.ensureTopics([{ topic: 't', numPartitions: 3, replicationFactor: 1 }]);
      let n = 0;
      async function loop() {
        for (;;) {
          const v = n++;
          await bus.produce('t', [{ key: 'k' + (v % 7), value: String(v) }]);
          process.stdout.write(v + '\\n');
        }
      }
      await Promise.all([loop(), loop(), loop(), loop()]);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, BUS_DIR: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked = new Set<number>();
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const line of lines) acked.add(Number(line));
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    const exited = once(child, 'exit');
    await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`child exited: ${err}`);
        return acked.size >= 300;
      },
      { what: '300 acknowledged produces', timeoutMs: 30_000 },
    );
    child.kill('SIGKILL');
    await exited;

    const bus = await openBus();
    const got = await readAll(bus, 't');
    const have = values(got);
    expect(new Set(have).size).toBe(have.length);
    for (const v of acked) expect(have).toContain(v);
    expectDenseOffsets(got);
  });
});
