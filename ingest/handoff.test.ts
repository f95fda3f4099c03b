import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Bus, OutgoingMessage } from '../core/bus/types.ts';
import { OrreryError } from '../core/errors.ts';
import { testLogger, waitFor } from '../test/helpers/index.ts';
import { createHandoff, type Handoff, type HandoffEvent, type HandoffOptions } from './handoff.ts';
import type { Spool, SpoolRecord } from './spool.ts';
import { openSpool as openSqliteSpool } from './spool-sqlite.ts';

const logger = testLogger();
const TOPIC = 'orrery.events.raw';

type Mode = 'up' | 'down' | 'hanging';

/**
 * A test double of the Bus interface: 'up' takes everything, 'down' rejects like the Kafka
 * adapter does when unreachable, 'hanging' never answers until release() (then the held
 * messages land, as a late Kafka ack would).
 */
function fakeBus() {
  let mode: Mode = 'up';
  const produced: OutgoingMessage[] = [];
  const held: Array<(land: boolean) => void> = [];
  let calls = 0;
  const bus: Bus = {
    kind: 'fake',
    produce(_topic: string, messages: OutgoingMessage[]) {
      calls++;
      const now = mode;
      if (now === 'down') {
        return Promise.reject(new OrreryError('BUS_UNAVAILABLE', 'fake bus is down', { retriable: true, status: 503 }));
      }
      if (now === 'hanging') {
        return new Promise<void>((resolve, reject) =>
          held.push((land) => {
            if (!land) return reject(new OrreryError('BUS_UNAVAILABLE', 'fake bus gave up', { retriable: true, status: 503 }));
            produced.push(...messages);
            resolve();
          }),
        );
      }
      return Promise.resolve().then(() => void produced.push(...messages));
    },
    consume: () => Promise.reject(new Error('the fake bus does not consume')),
    ensureTopics: async () => {},
    ping: async () => mode === 'up',
    close: async () => {},
  };
  return {
    bus,
    produced,
    set(m: Mode) {
      mode = m;
    },
    /** Answers every held produce, in the order they were made: landed, or failed. */
    release(land = true) {
      for (const answer of held.splice(0)) answer(land);
    },
    get calls() {
      return calls;
    },
  };
}

let dir: string;
const spools: Spool[] = [];
const handoffs: Handoff[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'orrery-handoff-'));
});

afterEach(async () => {
  await Promise.all(handoffs.splice(0).map((h) => h.close(0)));
  await Promise.all(spools.splice(0).map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

async function openSpool(maxBytes = 64 * 1024 * 1024): Promise<Spool> {
  const spool = await openSqliteSpool({ dir, maxBytes, logger });
  spools.push(spool);
  return spool;
}

function handoffOver(
  bus: Bus,
  spool: Spool,
  extra: Partial<HandoffOptions> = {},
): { handoff: Handoff; events: HandoffEvent[] } {
  const events: HandoffEvent[] = [];
  const handoff = createHandoff({
    bus,
    spool,
    topic: TOPIC,
    timeoutMs: 100,
    logger,
    onEvent: (e) => events.push(e),
    replay: { batchSize: 3, backoff: { initialMs: 10, maxMs: 40 } },
    ...extra,
  });
  handoffs.push(handoff);
  return { handoff, events };
}

function rec(key: string, n: number): SpoolRecord {
  return { key, value: JSON.stringify({ key, n }) };
}

/** What a consumer that drops duplicates by id sees: values in first-arrival order. */
function deduped(messages: OutgoingMessage[], key?: string): string[] {
  const seen = new Set<string>();
  for (const m of messages) if (key === undefined || m.key === key) seen.add(String(m.value));
  return [...seen];
}

const values = (records: SpoolRecord[]) => records.map((r) => r.value);

async function settled(handoff: Handoff): Promise<void> {
  await waitFor(() => handoff.state() === 'ok' && handoff.spoolDepth() === 0, { timeoutMs: 5_000, intervalMs: 5, what: 'the spool to drain' });
}

describe('createHandoff', () => {
  it('produces straight to the bus while it is up', async () => {
    const fake = fakeBus();
    const { handoff, events } = handoffOver(fake.bus, await openSpool());
    const records = [rec('a', 1), rec('b', 1)];
    await expect(handoff.send(records)).resolves.toBe('bus');
    expect(deduped(fake.produced)).toEqual(values(records));
    expect(handoff.state()).toBe('ok');
    expect(handoff.spoolDepth()).toBe(0);
    expect(events).toEqual([{ type: 'produced', records: 2, ms: expect.any(Number) }]);
  });

  it('spools while the bus is down and replays everything in order once it is back', async () => {
    const fake = fakeBus();
    fake.set('down');
    const { handoff, events } = handoffOver(fake.bus, await openSpool());
    const sent: SpoolRecord[] = [];
    for (let n = 1; n <= 7; n++) {
      const records = [rec('a', n), rec('b', n)];
      sent.push(...records);
      await expect(handoff.send(records)).resolves.toBe('spool');
    }
    expect(handoff.state()).toBe('degraded');
    expect(handoff.spoolDepth()).toBe(14);
    await waitFor(() => events.some((e) => e.type === 'replay_failed'), { timeoutMs: 5_000, intervalMs: 5 });

    fake.set('up');
    await settled(handoff);
    expect(deduped(fake.produced)).toEqual(values(sent));
    expect(events.filter((e) => e.type === 'spooled')).toHaveLength(7);
    expect(events.filter((e) => e.type === 'replayed').reduce((n, e) => n + ('records' in e ? e.records : 0), 0)).toBe(14);

    await expect(handoff.send([rec('a', 8)])).resolves.toBe('bus');
  });

  it('resolves spool after about timeoutMs when the bus hangs, keeping the order of concurrent sends', async () => {
    const fake = fakeBus();
    fake.set('hanging');
    const { handoff } = handoffOver(fake.bus, await openSpool(), { timeoutMs: 150 });
    const started = Date.now();
    const vias = await Promise.all([1, 2, 3, 4].map((n) => handoff.send([rec('a', n)])));
    const elapsed = Date.now() - started;
    expect(vias).toEqual(['spool', 'spool', 'spool', 'spool']);
    expect(elapsed).toBeGreaterThanOrEqual(140);
    expect(elapsed).toBeLessThan(5_000);
    expect(handoff.spoolDepth()).toBe(4);

    // The timed-out produces land late after all: duplicates of what the spool replays.
    fake.set('up');
    fake.release();
    await settled(handoff);
    expect(deduped(fake.produced, 'a')).toEqual([1, 2, 3, 4].map((n) => rec('a', n).value));
  });

  it('moves every waiting direct send to the spool at the first timeout, so later sends cannot overtake them', async () => {
    const fake = fakeBus();
    fake.set('hanging');
    const { handoff } = handoffOver(fake.bus, await openSpool(), { timeoutMs: 300 });
    const first = handoff.send([rec('a', 1)]);
    // Started later, so its own timeout would fire only after the send below is spooled.
    await new Promise((r) => setTimeout(r, 50));
    const second = handoff.send([rec('a', 2)]);
    await expect(first).resolves.toBe('spool');
    const third = handoff.send([rec('a', 3)]);
    await expect(Promise.all([second, third])).resolves.toEqual(['spool', 'spool']);

    // The held produces fail after all, so only the spool's order counts.
    fake.release(false);
    fake.set('up');
    await settled(handoff);
    expect(deduped(fake.produced)).toEqual([1, 2, 3].map((n) => rec('a', n).value));
  });

  it('sends to the spool while it holds anything, keeping order per key across both switches', async () => {
    const fake = fakeBus();
    fake.set('hanging');
    const { handoff } = handoffOver(fake.bus, await openSpool());
    await expect(handoff.send([rec('a', 1), rec('b', 1)])).resolves.toBe('spool');
    // The replay of a1/b1 now hangs on the bus, so the spool stays in use.
    await waitFor(() => fake.calls >= 2, { timeoutMs: 5_000, intervalMs: 5, what: 'the replay to start' });

    fake.set('up');
    const callsBefore = fake.calls;
    await expect(handoff.send([rec('a', 2)])).resolves.toBe('spool');
    await expect(handoff.send([rec('b', 2), rec('a', 3)])).resolves.toBe('spool');
    expect(fake.calls).toBe(callsBefore);
    expect(fake.produced).toEqual([]);
    expect(handoff.state()).toBe('degraded');

    fake.release();
    await settled(handoff);
    await expect(handoff.send([rec('a', 4), rec('b', 3)])).resolves.toBe('bus');
    expect(deduped(fake.produced, 'a')).toEqual([1, 2, 3, 4].map((n) => rec('a', n).value));
    expect(deduped(fake.produced, 'b')).toEqual([1, 2, 3].map((n) => rec('b', n).value));
  });

  it('refuses with SPOOL_FULL (503) when the bus is down and the spool has no room', async () => {
    const fake = fakeBus();
    fake.set('down');
    const { handoff, events } = handoffOver(fake.bus, await openSpool(400));
    const err = await handoff.send([{ key: 'a', value: 'x'.repeat(1_000) }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OrreryError);
    expect(err).toMatchObject({ code: 'SPOOL_FULL', status: 503, retriable: true });
    expect(events).toContainEqual({ type: 'spool_full' });
    expect(handoff.spoolDepth()).toBe(0);

    fake.set('up');
    await expect(handoff.send([rec('a', 1)])).resolves.toBe('bus');
  });

  it('close() waits for in-flight sends to settle before draining', async () => {
    const fake = fakeBus();
    fake.set('hanging');
    const { handoff } = handoffOver(fake.bus, await openSpool());
    const order: string[] = [];
    const inFlight = handoff.send([rec('a', 1)]).then((via) => {
      order.push(`send:${via}`);
    });
    fake.set('up');
    await handoff.close(5_000).then(() => order.push('closed'));
    await inFlight;
    expect(order).toEqual(['send:spool', 'closed']);
    expect(handoff.spoolDepth()).toBe(0);
    expect(deduped(fake.produced)).toEqual([rec('a', 1).value]);
  });

  it('close() drains the spool right away instead of waiting out the backoff, then refuses sends', async () => {
    const fake = fakeBus();
    fake.set('down');
    const { handoff, events } = handoffOver(fake.bus, await openSpool(), {
      replay: { backoff: { initialMs: 60_000, maxMs: 60_000, jitter: 0 } },
    });
    await handoff.send([rec('a', 1)]);
    await handoff.send([rec('a', 2)]);
    await waitFor(() => events.some((e) => e.type === 'replay_failed'), { timeoutMs: 5_000, intervalMs: 5 });
    fake.set('up');

    const started = Date.now();
    await handoff.close(10_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(handoff.spoolDepth()).toBe(0);
    expect(deduped(fake.produced)).toEqual([rec('a', 1).value, rec('a', 2).value]);

    const refused = await handoff.send([rec('a', 3)]).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OrreryError);
    expect(refused).toMatchObject({ code: 'SHUTTING_DOWN', status: 503, retriable: true });
  });

  it('leaves what it could not drain in the spool, and a new hand-off over the same directory replays it', async () => {
    const fake = fakeBus();
    fake.set('down');
    const spool = await openSpool();
    const first = handoffOver(fake.bus, spool).handoff;
    const sent = [rec('a', 1), rec('b', 1), rec('a', 2)];
    for (const r of sent) await first.send([r]);
    await first.close(50);
    expect(first.spoolDepth()).toBe(3);
    await spool.close();

    fake.set('up');
    const reopened = await openSpool();
    expect(reopened.depth().records).toBe(3);
    const { handoff: second, events } = handoffOver(fake.bus, reopened);
    expect(second.state()).toBe('degraded');
    await settled(second);
    expect(deduped(fake.produced)).toEqual(values(sent));
    expect(events.some((e) => e.type === 'replayed')).toBe(true);
  });
});
