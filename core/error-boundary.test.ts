import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGitopsComponent } from '../gitops/main.ts';
import { createIngestComponent } from '../ingest/main.ts';
import { pilotConfigFrom } from '../pilot/config.ts';
import { createPilotComponent } from '../pilot/main.ts';
import type { Adapters } from './adapters.ts';
import { createEmbeddedBus } from './bus/embedded.ts';
import { createMemoryCache } from './cache/memory.ts';
import type { Component, ComponentContext } from './component.ts';
import { loadConfig } from './config.ts';
import { createStaticControlPlane } from './control-plane-static.ts';
import { createSqliteStore } from './store/sqlite.ts';
import { UNEXPECTED_ERRORS_METRIC } from './error-boundary.ts';
import { createLogger } from './logger.ts';
import { createRegistry } from './metrics.ts';
import { coreTopicSpecs, topicNames } from './topics.ts';

/**
 * Each surface as its real factory builds it (ingest, gitops, pilot in one process, as
 * `orrery start` runs them), with one more route that throws what no handler expects: the
 * answer keeps the surface's own 500 body, and the error is logged at error level with
 * the route and counted by surface and route.
 */
const TOKEN = 'boundary-test-admin-token-0123';

describe('error boundary', () => {
  let dir: string;
  let adapters: Adapters;
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    }),
  );
  const registry = createRegistry({ service: 'test' });
  const components: Component[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'orrery-boundary-'));
    const config = loadConfig({ env: { ORRERY_DATA_DIR: dir } });
    const bus = await createEmbeddedBus({ dir: join(dir, 'bus'), logger });
    const cache = createMemoryCache();
    const store = createSqliteStore({ file: ':memory:', logger });
    adapters = { bus, store, cache, close: async () => void (await Promise.allSettled([bus.close(), store.close(), cache.close()])) };
    const topics = topicNames('boundary');
    await bus.ensureTopics(coreTopicSpecs(topics, { partitions: 1, replicationFactor: 1 }));
    const ctx: ComponentContext = { config, logger, registry, adapters, topics, controlPlane: createStaticControlPlane({ sources: [], destinations: [], routes: [] }), adminToken: TOKEN };
    components.push(await createIngestComponent(ctx), await createGitopsComponent(ctx), await createPilotComponent(ctx, { pilot: pilotConfigFrom({ PILOT_ADMIN_TOKEN: TOKEN }) }));
  }, 60_000);

  afterAll(async () => {
    for (const c of components.reverse()) await c.stop();
    await adapters?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function counted(surface: string, route: string): Promise<number> {
    const metric = (await registry.getSingleMetric(UNEXPECTED_ERRORS_METRIC)?.get())?.values ?? [];
    return metric.find((v) => v.labels.surface === surface && v.labels.route === route)?.value ?? 0;
  }

  it.each([
    ['ingest', 0, { success: false, code: 'internal', message: 'internal error' }],
    ['gitops', 1, { success: false, code: 'internal', message: 'internal error' }],
    ['pilot', 2, 'Internal Server Error'],
  ] as const)('%s: a route that throws answers 500 as before, is logged with its route at error level, and counted', async (surface, index, body) => {
    const routes = components[index]!.routes as Hono;
    const route = `/test/${surface}/boom/:n`;
    routes.get(route, () => {
      throw new TypeError(`${surface} exploded`);
    });
    expect(await counted(surface, route)).toBe(0);
    const res = await routes.request(`/test/${surface}/boom/1`);
    expect(res.status).toBe(500);
    expect(typeof body === 'string' ? await res.text() : await res.json()).toEqual(body);
    expect(await counted(surface, route)).toBe(1);
    await routes.request(`/test/${surface}/boom/2`);
    expect(await counted(surface, route)).toBe(2);
    const logged = lines.filter((l) => l.level === 'error' && l.route === route);
    expect(logged).toHaveLength(2);
    expect(logged[0]).toMatchObject({ surface, method: 'GET', err: { type: 'TypeError', message: `${surface} exploded` } });
  });

  it('a refusal (4xx) is expected: answered, not counted', async () => {
    const pilot = components[2]!.routes as Hono;
    const res = await pilot.request('/api/deploys?limit=abc', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(400);
    expect(await counted('pilot', '/api/deploys')).toBe(0);
    expect((await (components[1]!.routes as Hono).request('/deploys')).status).toBe(401);
    expect(await counted('gitops', '/deploys')).toBe(0);
  });

  it('one error body on every surface: { success: false, code (lowercase), message, details? }, payload_too_large a 400 everywhere (as Segment)', async () => {
    const [ingest, gitops, pilot] = components.map((c) => c.routes as Hono) as [Hono, Hono, Hono];
    const auth = { authorization: `Bearer ${TOKEN}` };
    const big = 'x'.repeat(600 * 1024);
    const answers: Array<[string, Response]> = [
      ['ingest: too large', await ingest.request('/v1/track', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: 'u', event: 'E', p: big }) })],
      ['ingest: no write key', await ingest.request('/v1/track', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })],
      ['pilot: too large', await pilot.request('/api/sources', { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ id: big }) })],
      ['pilot: invalid', await pilot.request('/api/sources', { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ id: 'has spaces' }) })],
      ['gitops: no such deploy', await gitops.request('/deploys/987654', { headers: auth })],
      ['gitops: no token', await gitops.request('/deploys')],
    ];
    for (const [what, res] of answers) {
      const body = (await res.json()) as Record<string, unknown>;
      expect(Object.keys(body).filter((k) => !['success', 'code', 'message', 'details'].includes(k)), what).toEqual([]);
      expect(body, what).toMatchObject({ success: false, code: expect.stringMatching(/^[a-z][a-z0-9_]*$/), message: expect.any(String) });
      if (body.code === 'payload_too_large') expect(res.status, what).toBe(400);
    }
    expect(answers.map(([w, r]) => [w, r.status])).toEqual([
      ['ingest: too large', 400],
      ['ingest: no write key', 401],
      ['pilot: too large', 400],
      ['pilot: invalid', 400],
      ['gitops: no such deploy', 404],
      ['gitops: no token', 401],
    ]);
  });
});
