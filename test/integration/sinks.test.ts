import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { createPgStore } from '../../core/store/pg.ts';
import { serviceEnv, uniqueName, waitFor } from '../helpers/index.ts';
import { freePort, startOrrery, type OrreryProcess } from '../helpers/process.ts';
import { startReceiver } from '../helpers/receiver.ts';
import { deadLetterCount, sendBatch, webhookPlatform } from '../helpers/webhook-platform.ts';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../bin/orrery.js', import.meta.url));

/** The shared platform, with fast backoffs so retries fit a test. */
const platform = (receiverUrl: string, extraEnv: Record<string, string> = {}) =>
  webhookPlatform(receiverUrl, { SINKS_BACKOFF_INITIAL_MS: '100', SINKS_BACKOFF_MAX_MS: '1000', ...extraEnv });

/** A counter from the process's /metrics, by its labels (any order); 0 when absent. */
async function counter(orrery: OrreryProcess, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${orrery.url}/metrics`)).text();
  for (const line of text.split('\n')) {
    const m = /^(\w+)\{([^}]*)\} (\S+)$/.exec(line);
    if (m?.[1] === name && Object.entries(labels).every(([k, v]) => m[2]!.includes(`${k}="${v}"`))) return Number(m[3]);
  }
  return 0;
}

/** Each of `users` users got all its `perUser` events, in the order they were sent. */
function expectPerUserOrder(accepted: Array<Record<string, unknown>>, tag: string, users: number, perUser: number): void {
  for (let u = 0; u < users; u++) {
    const seq = accepted.filter((b) => b.userId === `${tag}-u${u}`).map((b) => (b.properties as { n: number }).n);
    expect(seq).toEqual([...seq].sort((a, b) => a - b));
    expect(seq).toHaveLength(perUser);
  }
}

/**
 * Sends `count` Tick events of `users` users (event i: user i % users, properties.n = i) in
 * two batches, waits until the receiver accepted every messageId, and returns what it accepted.
 */
async function sendTicks(orrery: OrreryProcess, receiver: { accepted(): Array<Record<string, unknown>> }, tag: string, count: number, users: number) {
  const events = Array.from({ length: count }, (_, i) => ({ type: 'track', event: 'Tick', userId: `${tag}-u${i % users}`, messageId: `${tag}-${i}`, properties: { n: i } }));
  await sendBatch(orrery.url, events.slice(0, count / 2));
  await sendBatch(orrery.url, events.slice(count / 2));
  await waitFor(() => new Set(receiver.accepted().map((b) => b.messageId)).size === count, { timeoutMs: 120_000, what: `all ${count} events accepted` });
  return receiver.accepted();
}

describe('sinks: delivery with retries, dead letters and replay', () => {
  const procs: OrreryProcess[] = [];
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.stop()));
    await Promise.all(closers.splice(0).map((c) => c()));
  });

  it('a receiver that fails its first calls gets every event, in order per user, once per messageId', async () => {
    const receiver = await startReceiver({ respond: (call) => (call <= 6 ? 503 : 200) });
    closers.push(receiver.close);
    const { env } = await platform(receiver.url);
    const orrery = await startOrrery(['start'], env);
    procs.push(orrery);
    const tag = uniqueName('f');
    const accepted = await sendTicks(orrery, receiver, tag, 60, 5);
    expect(accepted).toHaveLength(60);
    expect(receiver.receipts.filter((r) => r.status === 503).length).toBe(6);
    expectPerUserOrder(accepted, tag, 5, 12);
    const metrics = await (await fetch(`${orrery.url}/metrics`)).text();
    expect(metrics).toMatch(/orrery_sink_events_delivered_total\{destination="hook"[^}]*\} 60/);
    expect(metrics).toMatch(/orrery_sink_retries_total\{destination="hook"[^}]*\} \d+/);
    expect(metrics).toContain('orrery_sink_delivery_latency_seconds_bucket');
  });

  it('KAFKA_CLIENT=kafkajs: ingest, router and sinks on kafkajs (the other client) deliver every event once, in order per user', async () => {
    const receiver = await startReceiver({ respond: (call) => (call <= 3 ? 503 : 200) });
    closers.push(receiver.close);
    const { env } = await platform(receiver.url, { KAFKA_CLIENT: 'kafkajs' });
    const orrery = await startOrrery(['start'], env);
    procs.push(orrery);
    // The process says which client its bus uses (and it is not the default).
    expect(orrery.logs.some((l) => l.component === 'adapters' && l.adapter === 'kafka' && l.client === 'kafkajs')).toBe(true);
    const tag = uniqueName('kjs');
    const accepted = await sendTicks(orrery, receiver, tag, 40, 4);
    expect(accepted).toHaveLength(40);
    expectPerUserOrder(accepted, tag, 4, 10);
    expect(await deadLetterCount(env)).toBe(0);
  });

  it('a receiver with nothing listening for a while, then up: every event delivered once, in order, no dead letter', async () => {
    const port = await freePort();
    const { env } = await platform(`http://127.0.0.1:${port}/collect`);
    const orrery = await startOrrery(['start'], env);
    procs.push(orrery);
    const tag = uniqueName('o');
    const events = Array.from({ length: 60 }, (_, i) => ({ type: 'track', event: 'Tick', userId: `${tag}-u${i % 5}`, messageId: `${tag}-${i}`, properties: { n: i } }));
    await sendBatch(orrery.url, events);
    // Down until the sink has failed 20 times (ECONNREFUSED each): past the old limit of 5
    // attempts, and with the breaker probing at most once a second, some 15 s of outage.
    const failures = () => counter(orrery, 'orrery_sink_delivery_failures_total', { destination: 'hook', retriable: 'true' });
    await waitFor(async () => (await failures()) >= 20 || (await deadLetterCount(env)) > 0, { timeoutMs: 90_000, intervalMs: 250, what: '20 failed attempts' });
    expect(await deadLetterCount(env)).toBe(0);

    const receiver = await startReceiver({ port });
    closers.push(receiver.close);
    await waitFor(() => new Set(receiver.accepted().map((b) => b.messageId)).size === 60, { timeoutMs: 60_000, what: 'all 60 events accepted' });
    expect(receiver.accepted()).toHaveLength(60);
    expectPerUserOrder(receiver.accepted(), tag, 5, 12);
    expect(await deadLetterCount(env)).toBe(0);
    expect(await counter(orrery, 'orrery_sink_events_delivered_total', { destination: 'hook' })).toBe(60);
  });

  it('a receiver failing its first 10 calls: all delivered, no dead letter, the breaker re-opens for at most its cap and closes', async () => {
    const receiver = await startReceiver({ respond: (call) => (call <= 10 ? 500 : 200) });
    closers.push(receiver.close);
    const { env } = await platform(receiver.url);
    const orrery = await startOrrery(['start'], env);
    procs.push(orrery);
    const tag = uniqueName('b');
    const events = Array.from({ length: 100 }, (_, i) => ({ type: 'track', event: 'Tick', userId: `${tag}-u${i % 5}`, messageId: `${tag}-${i}`, properties: { n: i } }));
    await sendBatch(orrery.url, events);
    await waitFor(() => new Set(receiver.accepted().map((b) => b.messageId)).size === 100, { timeoutMs: 120_000, what: 'all 100 events accepted' });
    expect(receiver.accepted()).toHaveLength(100);
    expectPerUserOrder(receiver.accepted(), tag, 5, 20);
    expect(receiver.receipts.filter((r) => r.status === 500)).toHaveLength(10);
    expect(await deadLetterCount(env)).toBe(0);
    // Each failed request was one attempt; the waits on the open breaker were none.
    expect(await counter(orrery, 'orrery_sink_delivery_failures_total', { destination: 'hook', retriable: 'true' })).toBe(10);
    // Ten failures in a row open the breaker (threshold 5); every trial after that fails
    // until the 11th call, each re-opening it for a computed period that must stay within
    // the default cap of 1 s (the old breaker held 10 s each), and the success closes it.
    await waitFor(() => orrery.logs.some((l) => l.msg === 'circuit closed: the destination answered'), { what: 'the breaker closed' });
    const transitions = orrery.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('circuit '));
    const opens = transitions.filter((l) => l.msg !== 'circuit closed: the destination answered');
    expect(opens.length).toBeGreaterThanOrEqual(1);
    expect(opens.length).toBeLessThanOrEqual(10);
    for (const o of opens) expect(o.cooldownMs).toBeLessThanOrEqual(1_000);
    expect(transitions.at(-1)?.msg).toBe('circuit closed: the destination answered');
  });

  it('a user whose events the destination keeps refusing is parked: the other users of its partition flow on, and its events arrive in order after a kill -9', async () => {
    const tag = uniqueName('p');
    const stuck = `${tag}-stuck`;
    const state = { healed: false };
    // 500 for the stuck user's events until healed: its failure is its own, everyone else's are taken.
    const receiver = await startReceiver({ respond: (_call, body) => ((body as { userId?: string }).userId === stuck && !state.healed ? 500 : 200) });
    closers.push(receiver.close);
    const { env } = await platform(receiver.url, { SINKS_PARK_AFTER_MS: '1000' });
    let orrery = await startOrrery(['start'], env);
    procs.push(orrery);
    const others = 20;
    let n = 0;
    const round = () => [
      ...Array.from({ length: 3 }, () => ({ type: 'track', event: 'Tick', userId: stuck, messageId: `${tag}-${n}`, properties: { n: n++ } })),
      ...Array.from({ length: others * 2 }, (_, i) => ({ type: 'track', event: 'Tick', userId: `${tag}-u${i % others}`, messageId: `${tag}-${n}`, properties: { n: n++ } })),
    ];
    await sendBatch(orrery.url, round());
    await waitFor(() => orrery.logs.some((l) => l.msg === 'user parked: its events retry from the park, the others flow on'), { timeoutMs: 60_000, what: 'the stuck user parked' });

    // Sent after the park: without it, the stuck user's partition (a third of the other
    // users, at 3 partitions) would read no further until its event gave up (3 h).
    await sendBatch(orrery.url, round());
    const othersAccepted = () => new Set(receiver.accepted().filter((b) => b.userId !== stuck).map((b) => b.messageId)).size;
    await waitFor(() => othersAccepted() === others * 4, { timeoutMs: 60_000, what: 'every other user\'s events delivered while one user is refused' });
    expectPerUserOrder(receiver.accepted().filter((b) => b.userId !== stuck), tag, others, 4);
    expect(receiver.accepted().filter((b) => b.userId === stuck)).toHaveLength(0);
    await waitFor(async () => (await counter(orrery, 'orrery_sink_parked_events', { destination: 'hook' })) === 6, { what: 'all six of the stuck user\'s events in the park' });

    // The park is durable: a kill -9 and a restart keep it, and its events come out in order once taken.
    await orrery.kill();
    await orrery.stop();
    orrery = await startOrrery(['start'], env);
    procs.push(orrery);
    state.healed = true;
    await waitFor(() => receiver.accepted().filter((b) => b.userId === stuck).length >= 6, { timeoutMs: 60_000, what: 'the stuck user\'s events delivered once taken' });
    await waitFor(() => orrery.logs.some((l) => l.msg === 'parked user drained: its events go in line again'), { what: 'the user unparked' });
    const stuckSeq = receiver.accepted().filter((b) => b.userId === stuck).map((b) => (b.properties as { n: number }).n);
    expect(stuckSeq).toEqual([...stuckSeq].sort((a, b) => a - b));
    expect(stuckSeq).toHaveLength(6);
    expect(await deadLetterCount(env)).toBe(0);
    expect(await counter(orrery, 'orrery_sink_parked_events', { destination: 'hook' })).toBe(0);

    // Unparked, the user's next events go in line again.
    await sendBatch(orrery.url, round());
    await waitFor(() => receiver.accepted().filter((b) => b.userId === stuck).length === 9, { timeoutMs: 60_000, what: 'the unparked user\'s next events' });
    expectPerUserOrder(receiver.accepted(), tag, others, 6);
    const ids = receiver.accepted().map((b) => b.messageId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('a destination down past the maximum age: events are dead-lettered, then replayed once', async () => {
    const receiver = await startReceiver({ respond: () => 503 });
    closers.push(receiver.close);
    const { env } = await platform(receiver.url, { SINKS_MAX_AGE_MS: '1500', SINKS_MAX_ATTEMPTS: '50' });
    const orrery = await startOrrery(['start'], env);
    procs.push(orrery);
    const tag = uniqueName('d');
    await sendBatch(orrery.url, [0, 1, 2].map((i) => ({ type: 'track', event: 'Lost', userId: `${tag}-u`, messageId: `${tag}-${i}` })));
    const cli = async (...args: string[]) => (await run(process.execPath, [CLI, 'dlq', ...args], { env: { ...process.env, ...env } })).stdout;
    const pending = await waitFor(
      async () => {
        const lines = (await cli('list', '--destination', 'hook')).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
        return lines.length === 3 ? lines : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500, what: 'three dead letters' },
    );
    expect(pending.map((l: { messageId: string }) => l.messageId)).toEqual([`${tag}-0`, `${tag}-1`, `${tag}-2`]);
    expect(pending[0]).toMatchObject({ destinationId: 'hook', httpStatus: 503, responseExcerpt: '{"error":"unavailable"}' });
    expect(pending[0].attempts).toBeGreaterThanOrEqual(2);
    expect(receiver.accepted()).toHaveLength(0);

    receiver.state.respond = () => 200;
    const replay = JSON.parse(await cli('replay', '--destination', 'hook'));
    expect(replay.replayed).toHaveLength(3);
    expect(replay.failed).toEqual([]);
    expect(receiver.accepted().map((b) => b.messageId)).toEqual([`${tag}-0`, `${tag}-1`, `${tag}-2`]);
    // A second replay finds nothing: each letter is delivered once.
    expect(JSON.parse(await cli('replay', '--destination', 'hook')).replayed).toEqual([]);
    expect(receiver.accepted()).toHaveLength(3);
    expect((await cli('list', '--destination', 'hook')).trim()).toBe('');
  });

  it('kill -9 of the worker mid-batch loses no event', async () => {
    const receiver = await startReceiver({ delayMs: 5 });
    closers.push(receiver.close);
    const { env } = await platform(receiver.url);
    let orrery = await startOrrery(['start'], env);
    procs.push(orrery);
    const tag = uniqueName('k');
    const N = 400;
    const events = Array.from({ length: N }, (_, i) => ({ type: 'track', event: 'Tick', userId: `${tag}-u${i % 20}`, messageId: `${tag}-${i}` }));
    for (let i = 0; i < N; i += 100) await sendBatch(orrery.url, events.slice(i, i + 100));
    await waitFor(() => receiver.accepted().length >= 40, { what: 'deliveries under way' });
    orrery.child.kill('SIGKILL');
    await orrery.stop();
    const before = receiver.accepted().length;
    orrery = await startOrrery(['start'], env);
    procs.push(orrery);
    await waitFor(() => new Set(receiver.accepted().map((b) => b.messageId)).size === N, { timeoutMs: 90_000, what: `all ${N} events delivered` });
    const ids = receiver.accepted().map((b) => b.messageId);
    console.info(`sink kill -9: ${N} events, ${before} delivered before the kill, ${ids.length - N} delivered twice`);
    expect(new Set(ids).size).toBe(N);
  });

  it('the warehouse destination stages events in Postgres, once per messageId', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orrery-wh-'));
    const schema = uniqueName('wh').toLowerCase();
    await writeFile(
      join(dir, 'orrery.yaml'),
      `sources: [{ id: web, writeKeys: [sink-test-key] }]
destinations: [{ id: dwh, type: warehouse, databaseUrl: \${DATABASE_URL}, schema: ${schema} }]
routes: [{ source: web, destination: dwh }]
`,
    );
    const { env } = await platform('http://127.0.0.1:9/unused');
    const orrery = await startOrrery(['start'], { ...env, ORRERY_CONFIG: join(dir, 'orrery.yaml') });
    procs.push(orrery);
    const tag = uniqueName('w');
    const events = Array.from({ length: 50 }, (_, i) => ({ type: 'track', event: 'Staged', userId: `${tag}-u${i % 4}`, messageId: `${tag}-${i}` }));
    await sendBatch(orrery.url, events);
    await sendBatch(orrery.url, events.slice(0, 10));
    const store = createPgStore({ url: serviceEnv('DATABASE_URL'), schema });
    try {
      const count = async () => Number((await store.query<{ n: string }>('select count(*) as n from batch_events').catch(() => ({ rows: [{ n: '0' }] }))).rows[0]!.n);
      await waitFor(async () => (await count()) === 50, { timeoutMs: 60_000, what: '50 staged rows' });
      const metrics = await (await fetch(`${orrery.url}/metrics`)).text();
      expect(metrics).toMatch(/orrery_sink_events_delivered_total\{destination="dwh"[^}]*\} 50/);
      expect(await count()).toBe(50);
    } finally {
      await store.close();
    }
  });
});
