import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMBEDDED_FILE } from '../../core/adapters.ts';
import { createSqliteBus } from '../../core/bus/sqlite.ts';
import type { Bus, IncomingMessage } from '../../core/bus/types.ts';
import { createPgStore } from '../../core/store/pg.ts';
import { createSqliteStore } from '../../core/store/sqlite.ts';
import type { Store } from '../../core/store/types.ts';
import { listRouterDeadLetters, recordRouterDeadLetters, replayRouterDeadLetters } from '../../router/dead-letters.ts';
import { listDeadLetters, recordDeadLetters } from '../../sinks/dead-letters.ts';
import { getAnyDeadLetter, pendingByStage } from '../../pilot/dead-letters.ts';
import { serviceEnv, testLogger, uniqueName, waitFor } from '../helpers/index.ts';
import { realServicesEnv, startOrrery, webToHookConfig, type OrreryProcess } from '../helpers/process.ts';
import { startReceiver } from '../helpers/receiver.ts';
import { recordTopics, testBus } from '../helpers/topics.ts';

/**
 * The router's dead letters in the whole platform (`orrery start` on real Kafka, Postgres
 * and Redis): an event of an unknown source lands on the DLQ topic, shows in Pilot's dead
 * letters with its story and raw bytes, raises the dead-letter alert, and once the source
 * is added, a replay from Pilot routes it, once.
 */
const TOKEN = 'router-dlq-integration-token-0123456789';
const CLI = fileURLToPath(new URL('../../bin/orrery.js', import.meta.url));
const run = promisify(execFile);

type Json = Record<string, any>;

/** An envelope as ingest writes it, of a source the control plane may not know. */
function envelope(sourceId: string, messageId: string, event = 'Ghost Event'): string {
  const now = new Date().toISOString();
  return JSON.stringify({ v: 1, sourceId, receivedAt: now, type: 'track', messageId, userId: 'u1', event, properties: { n: 1 }, context: {}, integrations: {}, timestamp: now });
}


describe('router dead letters: visible in Pilot, alerting, replayable', () => {
  let orrery: OrreryProcess;
  let alerts: Awaited<ReturnType<typeof startReceiver>>;
  let bus: Bus;
  let prefix: string;
  let raw: string;
  let env: Record<string, string>;
  const tag = uniqueName('m');

  async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
    const res = await fetch(`${orrery.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Json };
  }

  beforeAll(async () => {
    alerts = await startReceiver();
    const receiver = await startReceiver();
    env = realServicesEnv(await webToHookConfig('rdlq', 'rdlq-key', receiver.url), 'rdlq');
    prefix = env.KAFKA_TOPIC_PREFIX!;
    raw = `${prefix}.events.raw`;
    orrery = await startOrrery(['start'], {
      ...env,
      PILOT_ADMIN_TOKEN: TOKEN,
      PILOT_ALERT_WEBHOOK: alerts.url,
      PILOT_ALERT_INTERVAL_MS: '300',
      PILOT_ALERT_WINDOW_MS: '60000',
      PILOT_SAMPLE_MS: '500',
    });
    bus = testBus(uniqueName('rdlq-test'));
  });

  afterAll(async () => {
    await orrery?.stop();
    await bus?.close();
    await alerts?.close();
  });

  it('an unknown source\'s event and unparseable bytes show in Pilot with their story; the alert fires; after the source is added, a replay routes the event once', async () => {
    const ghostId = `${tag}-ghost`;
    const ghostValue = envelope('ghost', ghostId);
    // Not UTF-8: shown as base64.
    const binary = Buffer.from([0xff, 0xfe, 0x00, 0x81, 0x7b]);
    await bus.produce(raw, [
      { key: 'ghost:u1', value: ghostValue },
      { key: 'bin:1', value: binary },
    ]);

    const letters = await waitFor(
      async () => {
        const { status, body } = await api('GET', '/api/dead-letters?stage=router');
        expect(status).toBe(200);
        return body.deadLetters.length >= 2 ? (body.deadLetters as Json[]) : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250, what: 'the router dead letters in Pilot' },
    );
    const ghost = letters.find((l) => l.key === 'ghost:u1')!;
    expect(ghost).toMatchObject({
      stage: 'router',
      reason: 'unknown_source',
      error: expect.stringContaining('no source "ghost"'),
      configVersion: expect.any(Number),
      originalTopic: raw,
      originalPartition: expect.any(Number),
      originalOffset: expect.stringMatching(/^\d+$/),
      raw: ghostValue,
      rawEncoding: 'utf8',
      dlq: { topic: `${prefix}.events.dlq` },
      replayedAt: null,
    });
    const bin = letters.find((l) => l.key === 'bin:1')!;
    expect(bin).toMatchObject({ stage: 'router', reason: 'invalid_json', raw: binary.toString('base64'), rawEncoding: 'base64' });
    // One id space with the sinks' letters: the letter reads back by id.
    expect((await api('GET', `/api/dead-letters/${ghost.id}`)).body).toEqual(ghost);
    const listed = await api('GET', '/api/dead-letters');
    expect(listed.body.pendingByStage).toEqual({ sink: 0, router: 2 });
    expect(listed.body.deadLetters.map((l: Json) => l.id)).toEqual(expect.arrayContaining([ghost.id, bin.id]));
    expect((await api('GET', '/api/dead-letters?stage=nope')).body.code).toBe('invalid_request');
    expect((await api('POST', '/api/dead-letters/replay', { stage: 'router', destinationId: 'hook' })).status).toBe(400);
    // Listing: query parameters cannot say they exclude each other, so the contradiction lists nothing.
    expect(await api('GET', '/api/dead-letters?stage=router&destination=hook')).toMatchObject({ status: 200, body: { deadLetters: [] } });

    // The dead-letter growth alert counts the router's letters.
    const firing = await waitFor(() => alerts.accepted().find((b) => b.status === 'firing' && (b.alert as Json).key === 'dead-letters-growing:router'), {
      timeoutMs: 20_000,
      what: 'the router dead-letter alert',
    });
    expect((firing.alert as Json).summary).toBe('the router dead-lettered 2 events in the last 1m (invalid_json: 1, unknown_source: 1)');

    // Add the source and a route; replay once the router routes with that version.
    const { body: created } = await api('POST', '/api/sources', { id: 'ghost' });
    const { body: routed } = await api('POST', '/api/routes', { route: { source: 'ghost', destination: 'hook' }, expectedVersion: created.version });
    await waitFor(async () => (await api('GET', '/api/metrics/summary')).body.router.configVersion >= routed.version, { what: 'the router on the new version' });

    const dest = `${prefix}.dest.hook`;
    const seen = await recordTopics(bus, [dest]);
    try {
      expect((await api('POST', `/api/dead-letters/${ghost.id}/replay`)).body).toEqual({ replayed: [ghost.id], failed: [] });
      // Replayed already: nothing more goes out, by id or in bulk.
      expect((await api('POST', `/api/dead-letters/${ghost.id}/replay`)).body).toEqual({ replayed: [], failed: [] });
      expect((await api('POST', '/api/dead-letters/replay', { ids: [ghost.id] })).body).toEqual({ replayed: [], failed: [] });

      // A later event on the same key (so the same partitions, in order) marks the end: once
      // it is on the destination topic, every copy of the replayed event would be there too.
      const endId = `${tag}-end`;
      await bus.produce(raw, [{ key: 'ghost:u1', value: envelope('ghost', endId) }]);
      const ids = (m: IncomingMessage) => (JSON.parse(m.value!.toString('utf8')) as Json).messageId as string;
      await waitFor(() => seen.messages.get(dest)!.some((m) => ids(m) === endId), { timeoutMs: 30_000, what: 'the end marker on the destination topic' });
      const copies = seen.messages.get(dest)!.filter((m) => ids(m) === ghostId);
      expect(copies).toHaveLength(1);
      expect(copies[0]!.key).toBe('ghost:u1');
      expect(JSON.parse(copies[0]!.value!.toString('utf8'))).toMatchObject({ sourceId: 'ghost', messageId: ghostId, routing: { destinationId: 'hook' } });
    } finally {
      await seen.sub.stop();
    }

    const after = await api('GET', '/api/dead-letters?stage=router&includeReplayed=true');
    expect(after.body.deadLetters.find((l: Json) => l.id === ghost.id)).toMatchObject({ replayedAt: expect.any(String), replayAttempts: 1 });
    expect(after.body.pendingByStage).toEqual({ sink: 0, router: 1 });

    // `orrery dlq` sees the same letters; a letter the router still cannot route comes back as a new one.
    const cli = async (...args: string[]) => (await run(process.execPath, [CLI, 'dlq', ...args], { env: { ...process.env, ...env } })).stdout;
    const lines = (out: string) => out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Json);
    expect(lines(await cli('list', '--stage', 'router')).map((l) => [l.id, l.reason, l.raw])).toEqual([[bin.id, 'invalid_json', binary.toString('base64')]]);
    expect(JSON.parse(await cli('replay', '--stage', 'router'))).toEqual({ replayed: [bin.id], failed: [] });
    const again = await waitFor(async () => lines(await cli('list', '--stage', 'router'))[0], { what: 'the replayed bytes dead-lettered again' });
    expect(again).toMatchObject({ reason: 'invalid_json', key: 'bin:1', raw: binary.toString('base64') });
    expect(again.id).toBeGreaterThan(bin.id);
  });
});

/** A DLQ message as the router writes it; `error` may quote bytes, NUL included. */
function dlqMessage(offset: number, value: Buffer, key: string | null, error = 'no source "ghost"'): IncomingMessage {
  return {
    topic: 't.events.dlq',
    partition: 1,
    offset: String(offset),
    key,
    value,
    timestamp: 1_900_000_000_000,
    headers: {
      'x-orrery-stage': 'router',
      'x-orrery-reason': 'unknown_source',
      'x-orrery-error': error,
      'x-orrery-original-topic': 't.events.raw',
      'x-orrery-original-partition': '0',
      'x-orrery-original-offset': String(100 + offset),
      'x-orrery-config-version': '7',
    },
  };
}

const tempDirs: string[] = [];
afterAll(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

for (const [kind, open] of [
  ['pg', async () => createPgStore({ url: serviceEnv('DATABASE_URL'), schema: uniqueName('rdlq').toLowerCase() })],
  ['sqlite', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orrery-rdlq-sqlite-'));
    tempDirs.push(dir);
    return createSqliteStore({ file: join(dir, 'orrery.sqlite'), logger: testLogger() });
  }],
] as const) {
  describe(`router dead letters in the ${kind} store`, () => {
    let store: Store;
    beforeAll(async () => {
      store = await open();
    });
    afterAll(async () => {
      await store?.close();
    });

    it('records each DLQ message once, whatever is read again; replays each once, even two replays at once', async () => {
      const messages = [
        dlqMessage(0, Buffer.from('{"v":1}'), 'ghost:u1'),
        dlqMessage(1, Buffer.from([0x00, 0xff, 0x41]), null, 'bytes \u0000\u00ff'),
        dlqMessage(2, Buffer.from('{"v":1,"n":2}'), 'ghost:u2'),
      ];
      expect(await recordRouterDeadLetters(store, messages.slice(0, 2))).toBe(2);
      // A crash before the commit: the batch comes again, with one more message.
      expect(await recordRouterDeadLetters(store, messages)).toBe(1);
      // A sink letter takes an id from the same sequence: ids never collide across stages.
      await recordDeadLetters(store, [
        { destinationId: 'hook', event: { v: 1, sourceId: 'web', type: 'track', messageId: 'm', userId: 'u', receivedAt: new Date().toISOString() } as never, attempts: 1, lastError: 'e', firstAttemptAt: Date.now() },
      ]);
      const letters = await listRouterDeadLetters(store);
      expect(letters.map((l) => [l.dlq.offset, l.key, l.raw, l.rawEncoding, l.configVersion, l.originalOffset])).toEqual([
        ['0', 'ghost:u1', '{"v":1}', 'utf8', 7, '100'],
        ['1', null, Buffer.from([0x00, 0xff, 0x41]).toString('base64'), 'base64', 7, '101'],
        ['2', 'ghost:u2', '{"v":1,"n":2}', 'utf8', 7, '102'],
      ]);
      expect(letters[1]!.error).toBe('bytes \ufffd\u00ff');
      const sink = await store.query<{ id: string }>('select id from sink_dead_letters');
      expect(letters.map((l) => l.id)).not.toContain(Number(sink.rows[0]!.id));
      expect(await getAnyDeadLetter(store, letters[0]!.id)).toMatchObject({ stage: 'router', key: 'ghost:u1' });
      expect(await getAnyDeadLetter(store, Number(sink.rows[0]!.id))).toMatchObject({ stage: 'sink', destinationId: 'hook' });

      const produced: Array<{ key: string | null; value: string }> = [];
      const produce = async (key: string | null, value: Buffer) => {
        produced.push({ key, value: value.toString('base64') });
      };
      const [a, b] = await Promise.all([replayRouterDeadLetters(store, {}, produce), replayRouterDeadLetters(store, {}, produce)]);
      expect([...a.replayed, ...b.replayed].sort((x, y) => x - y)).toEqual(letters.map((l) => l.id));
      expect(produced.map((p) => p.key).sort()).toEqual(['ghost:u1', 'ghost:u2', null].sort());
      expect(produced.find((p) => p.key === null)!.value).toBe(Buffer.from([0x00, 0xff, 0x41]).toString('base64'));
      expect(await replayRouterDeadLetters(store, {}, produce)).toEqual({ replayed: [], failed: [] });
      expect(produced).toHaveLength(3);
    });

    it('a failed produce leaves the letter pending, with the error', async () => {
      await recordRouterDeadLetters(store, [dlqMessage(50, Buffer.from('x'), 'k')]);
      const [pending] = await listRouterDeadLetters(store);
      const failed = await replayRouterDeadLetters(store, { ids: [pending!.id] }, async () => {
        throw new Error('bus unreachable');
      });
      expect(failed).toEqual({ replayed: [], failed: [{ id: pending!.id, error: 'bus unreachable' }] });
      expect((await listRouterDeadLetters(store))[0]).toMatchObject({ id: pending!.id, replayedAt: null, replayAttempts: 1, replayError: 'bus unreachable' });
    });

    it('one id space across both stages: whichever stage writes, a DLQ message read again included, no id names two letters', async () => {
      const sinkLetter = (messageId: string) => ({
        destinationId: 'hook',
        event: { v: 1, sourceId: 'web', type: 'track', messageId, userId: 'u', receivedAt: new Date().toISOString() } as never,
        attempts: 1,
        lastError: 'e',
        firstAttemptAt: Date.now(),
      });
      const written: Array<{ stage: 'router' | 'sink'; tag: string }> = [];
      const idsOf = async () => ({
        router: new Map((await listRouterDeadLetters(store, { includeReplayed: true, limit: 1000 })).map((l) => [l.dlq.offset, l.id])),
        sink: new Map((await listDeadLetters(store, { includeReplayed: true, limit: 1000 })).map((l) => [l.messageId, l.id])),
      });
      const before = await pendingByStage(store);
      await recordDeadLetters(store, [sinkLetter('s-1')]);
      written.push({ stage: 'sink', tag: 's-1' });
      expect(await recordRouterDeadLetters(store, [dlqMessage(60, Buffer.from('a'), 'k'), dlqMessage(61, Buffer.from('b'), 'k')])).toBe(2);
      written.push({ stage: 'router', tag: '60' }, { stage: 'router', tag: '61' });
      // Read again, with one new message: only that one is new.
      expect(await recordRouterDeadLetters(store, [dlqMessage(61, Buffer.from('b'), 'k'), dlqMessage(62, Buffer.from('c'), 'k')])).toBe(1);
      written.push({ stage: 'router', tag: '62' });
      await recordDeadLetters(store, [sinkLetter('s-2'), sinkLetter('s-3')]);
      written.push({ stage: 'sink', tag: 's-2' }, { stage: 'sink', tag: 's-3' });
      expect(await recordRouterDeadLetters(store, [dlqMessage(63, Buffer.from('d'), 'k')])).toBe(1);
      written.push({ stage: 'router', tag: '63' });

      const ids = await idsOf();
      const all = [...ids.router.values(), ...ids.sink.values()];
      expect(new Set(all).size).toBe(all.length);
      // In the order written, across stages.
      const inOrder = written.map((w) => ids[w.stage].get(w.tag)!);
      expect(inOrder).toEqual([...inOrder].sort((a, b) => a - b));
      for (const w of written) expect(await getAnyDeadLetter(store, ids[w.stage].get(w.tag)!)).toMatchObject({ stage: w.stage });
      expect(await pendingByStage(store)).toEqual({ sink: before.sink + 3, router: before.router + 4 });
    });
  });
}

describe('router dead letters on the embedded defaults (no Kafka, Postgres or Redis)', () => {
  it('an unknown source\'s event on the embedded bus shows in Pilot, and replays to the destination once the source is added', async () => {
    const receiver = await startReceiver();
    const dir = await webToHookConfig('rdlq-embedded', 'embedded-key', receiver.url);
    tempDirs.push(dir);
    const env = { ORRERY_CONFIG: join(dir, 'orrery.yaml'), ORRERY_DATA_DIR: join(dir, 'data'), KAFKA_BROKERS: '', DATABASE_URL: '', REDIS_URL: '', PILOT_ADMIN_TOKEN: TOKEN };
    // A first run creates the topics; between runs, the test writes to the bus itself (one
    // process at a time opens it), as an event of a source since removed would be.
    expect(await (await startOrrery(['start'], env)).stop()).toBe(0);
    const bus = await createSqliteBus({ file: join(dir, 'data', EMBEDDED_FILE), logger: testLogger() });
    const ghostValue = envelope('ghost', 'emb-ghost', 'Ghost');
    await bus.produce('orrery.events.raw', [{ key: 'ghost:u1', value: ghostValue }]);
    await bus.close();

    const orrery = await startOrrery(['start'], env);
    try {
      const api = async (method: string, path: string, body?: unknown) =>
        (await fetch(`${orrery.url}${path}`, {
          method,
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        }).then((r) => r.json())) as Json;
      const letter = await waitFor(async () => (await api('GET', '/api/dead-letters?stage=router')).deadLetters[0] as Json | undefined, { what: 'the letter in Pilot' });
      expect(letter).toMatchObject({ stage: 'router', reason: 'unknown_source', key: 'ghost:u1', raw: ghostValue, originalTopic: 'orrery.events.raw' });
      // `orrery dlq list` reads the embedded store while `orrery start` runs on it (SQLite's WAL).
      const listed = (await run(process.execPath, [CLI, 'dlq', 'list', '--stage', 'router'], { env: { ...process.env, ...env } })).stdout;
      expect(listed.trim().split('\n').map((l) => JSON.parse(l) as Json)).toEqual([expect.objectContaining({ id: letter.id, stage: 'router', key: 'ghost:u1' })]);

      const created = await api('POST', '/api/sources', { id: 'ghost' });
      const routed = await api('POST', '/api/routes', { route: { source: 'ghost', destination: 'hook' }, expectedVersion: created.version });
      await waitFor(async () => (await api('GET', '/api/metrics/summary')).router.configVersion >= routed.version, { what: 'the router on the new version' });
      expect(await api('POST', `/api/dead-letters/${letter.id}/replay`)).toEqual({ replayed: [letter.id], failed: [] });
      expect(await api('POST', '/api/dead-letters/replay', {})).toEqual({ replayed: [], failed: [] });

      // An event of the same user through ingest, after the replays: once it is delivered,
      // so is every copy of the replayed one (one key, one partition, in order).
      const track = await fetch(`${orrery.url}/v1/track`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Basic ${btoa(`${created.writeKey}:`)}` },
        body: JSON.stringify({ userId: 'u1', event: 'End', messageId: 'emb-end' }),
      });
      expect(track.status).toBe(200);
      await waitFor(() => receiver.accepted().some((b) => b.messageId === 'emb-end'), { what: 'the end marker delivered' });
      expect(receiver.accepted().filter((b) => b.messageId === 'emb-ghost')).toEqual([expect.objectContaining({ event: 'Ghost', userId: 'u1' })]);
    } finally {
      await orrery.stop();
      await receiver.close();
    }
  });
});
