import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { createPgStore } from '../../core/store/pg.ts';
import { serviceEnv, uniqueName, waitFor } from '../helpers/index.ts';
import { startOrrery, type OrreryProcess } from '../helpers/process.ts';
import { startReceiver } from '../helpers/receiver.ts';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../bin/orrery.ts', import.meta.url));

/**
 * Ingest → router → sinks in one `orrery start` process, on real Kafka, Redis and
 * Postgres, delivering to a real local HTTP receiver.
 */
async function platform(receiverUrl: string, extraEnv: Record<string, string> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'orrery-sinks-'));
  await writeFile(
    join(dir, 'orrery.yaml'),
    `sources: [{ id: web, writeKeys: [sink-test-key] }]
destinations: [{ id: hook, type: webhook, url: "${receiverUrl}", allowPrivateNetwork: true }]
routes: [{ source: web, destination: hook }]
`,
  );
  const env = {
    ORRERY_CONFIG: join(dir, 'orrery.yaml'),
    KAFKA_BROKERS: serviceEnv('KAFKA_BROKERS'),
    KAFKA_TOPIC_PREFIX: uniqueName('sk'),
    KAFKA_TOPIC_PARTITIONS: '3',
    DATABASE_URL: serviceEnv('DATABASE_URL'),
    DATABASE_SCHEMA: uniqueName('sk').toLowerCase(),
    REDIS_URL: serviceEnv('REDIS_URL'),
    ROUTER_GROUP: uniqueName('router'),
    SINKS_GROUP_PREFIX: uniqueName('sink'),
    SINKS_BACKOFF_INITIAL_MS: '100',
    SINKS_BACKOFF_MAX_MS: '1000',
    SINKS_BREAKER_COOLDOWN_MS: '1000',
    INGEST_SPOOL_DIR: join(dir, 'spool'),
    ...extraEnv,
  };
  return { env, dir };
}

async function sendBatch(url: string, events: object[]): Promise<void> {
  const res = await fetch(`${url}/v1/batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Basic ${btoa('sink-test-key:')}` },
    body: JSON.stringify({ batch: events }),
  });
  expect(res.status).toBe(200);
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
    const events = Array.from({ length: 60 }, (_, i) => ({ type: 'track', event: 'Tick', userId: `${tag}-u${i % 5}`, messageId: `${tag}-${i}`, properties: { n: i } }));
    await sendBatch(orrery.url, events.slice(0, 30));
    await sendBatch(orrery.url, events.slice(30));
    await waitFor(() => new Set(receiver.accepted().map((b) => b.messageId)).size === 60, { timeoutMs: 120_000, what: 'all 60 events accepted' });
    const accepted = receiver.accepted();
    expect(accepted).toHaveLength(60);
    expect(receiver.receipts.filter((r) => r.status === 503).length).toBe(6);
    for (let u = 0; u < 5; u++) {
      const seq = accepted.filter((b) => b.userId === `${tag}-u${u}`).map((b) => (b.properties as { n: number }).n);
      expect(seq).toEqual([...seq].sort((a, b) => a - b));
      expect(seq).toHaveLength(12);
    }
    const metrics = await (await fetch(`${orrery.url}/metrics`)).text();
    expect(metrics).toMatch(/orrery_sink_events_delivered_total\{destination="hook"[^}]*\} 60/);
    expect(metrics).toMatch(/orrery_sink_retries_total\{destination="hook"[^}]*\} \d+/);
    expect(metrics).toContain('orrery_sink_delivery_latency_seconds_bucket');
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
