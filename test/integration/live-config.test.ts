import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { updateControlPlane } from '../../core/control-plane-pg.ts';
import { createPgStore } from '../../core/store/pg.ts';
import { topicNames } from '../../core/topics.ts';
import { serviceEnv, uniqueName, waitFor } from '../helpers/index.ts';
import { startOrrery, type OrreryProcess } from '../helpers/process.ts';
import { recordTopics, testBus } from '../helpers/topics.ts';

/**
 * `orrery start` runs ingest and router in one process over the same control plane in
 * Postgres: a new write key and a new route work without a restart, end to end.
 */
describe('live control-plane changes, ingest → router in one process', () => {
  let orrery: OrreryProcess | undefined;
  const bus = testBus('it-live');
  afterAll(async () => {
    await orrery?.stop();
    await bus.close();
  });

  it('a key and a route added in the database work at once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orrery-live-'));
    await writeFile(
      join(dir, 'orrery.yaml'),
      `sources: [{ id: web, writeKeys: [first-write-key] }]
destinations: [{ id: hook, type: webhook, url: "http://127.0.0.1:9/x" }]
routes: [{ source: web, destination: hook }]
`,
    );
    const prefix = uniqueName('live');
    const schema = uniqueName('live').toLowerCase();
    const topics = topicNames(prefix);
    orrery = await startOrrery(['start', 'ingest', 'router'], {
      ORRERY_CONFIG: join(dir, 'orrery.yaml'),
      KAFKA_BROKERS: serviceEnv('KAFKA_BROKERS'),
      KAFKA_TOPIC_PREFIX: prefix,
      DATABASE_URL: serviceEnv('DATABASE_URL'),
      DATABASE_SCHEMA: schema,
      REDIS_URL: serviceEnv('REDIS_URL'),
      INGEST_SPOOL_DIR: join(dir, 'spool'),
    });
    const send = (key: string, body: object) =>
      fetch(`${orrery!.url}/v1/track`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Basic ${btoa(`${key}:`)}` },
        body: JSON.stringify(body),
      });

    expect((await send('second-write-key', { userId: 'u', event: 'E' })).status).toBe(401);
    const store = createPgStore({ url: serviceEnv('DATABASE_URL'), schema });
    try {
      await updateControlPlane(store, (doc) => ({
        sources: doc.sources.map((s) => ({ ...s, writeKeys: ['second-write-key'] })),
        destinations: [...doc.destinations, { id: 'audit', type: 'webhook', enabled: true, url: 'http://127.0.0.1:9/y' }],
        routes: [...doc.routes, { source: 'web', destination: 'audit', enabled: true, transforms: [], filter: { events: ['Audited'] } }],
      }));
    } finally {
      await store.close();
    }
    await waitFor(async () => (await send('second-write-key', { userId: 'u', event: 'Warmup' })).status === 200, { what: 'the new key to work' });
    // The old key still works: rotation keeps both. (A messageId of its own: dedup remembers ids for 24 h.)
    const audited = uniqueName('audited');
    expect((await send('first-write-key', { userId: 'u', event: 'Audited', messageId: audited })).status).toBe(200);

    await waitFor(async () => (await bus.ping()) && (await fetch(`${orrery!.url}/readyz`)).ok, { what: 'ready' });
    const rec = await waitFor(
      async () => {
        try {
          return await recordTopics(bus, [topics.destination('audit')]);
        } catch {
          return undefined;
        }
      },
      { what: 'the audit topic, created by the router on the config change' },
    );
    await waitFor(() => rec.messages.get(topics.destination('audit'))!.some((m) => JSON.parse(m.value!.toString()).messageId === audited), {
      what: 'the event on the new route',
    });
    await rec.sub.stop();
  });
});
