import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hono } from 'hono';
import { Counter, Gauge } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Adapters } from '../core/adapters.ts';
import { standardWebhookHeaders } from '../core/auth.ts';
import { createEmbeddedBus } from '../core/bus/embedded.ts';
import { createMemoryCache } from '../core/cache/memory.ts';
import { loadConfig } from '../core/config.ts';
import { createPgControlPlane, seedControlPlane } from '../core/control-plane-pg.ts';
import type { ControlPlaneSource } from '../core/control-plane-source.ts';
import { createSqliteStore } from '../core/store/sqlite.ts';
import { createLogger } from '../core/logger.ts';
import { createRegistry } from '../core/metrics.ts';
import { unmatchedRoutes } from '../core/serve.ts';
import { coreTopicSpecs, topicNames } from '../core/topics.ts';
import { redactDestination, restoreRedacted } from './api.ts';
import { pilotConfigFrom } from './config.ts';
import { createPilotComponent } from './main.ts';

/**
 * The Pilot component in process, on the embedded bus and a SQLite store in memory: auth,
 * the control plane, the debugger fed from the raw topic, SSE, the demo webhook, metrics
 * and the UI pages. The same API against Kafka and Postgres is in
 * test/integration/pilot.test.ts.
 */
const TOKEN = 'unit-test-admin-token-0123456789';
const DEMO_SECRET = `whsec_${Buffer.from('pilot-unit-demo-secret').toString('base64')}`;
const logger = createLogger({ level: 'silent' });

describe('pilot component (embedded bus, SQLite store in memory)', () => {
  let dir: string;
  let adapters: Adapters;
  let controlPlane: ControlPlaneSource | undefined;
  let pilot: Awaited<ReturnType<typeof createPilotComponent>>;
  const registry = createRegistry({ service: 'test' });
  const topics = topicNames('pilotunit');
  const request = (path: string, init: RequestInit = {}, token: string | null = TOKEN) =>
    pilot.routes!.request(path, { ...init, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json', ...(init.headers ?? {}) } });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'orrery-pilot-unit-'));
    const config = loadConfig({ env: { ORRERY_DATA_DIR: dir } });
    // Built here rather than by createAdapters: a store in memory, nothing under the data dir.
    const bus = await createEmbeddedBus({ dir: join(config.dataDir, 'bus'), logger });
    const cache = createMemoryCache();
    adapters = {
      bus,
      store: createSqliteStore({ file: ':memory:', logger }),
      cache,
      async close() {
        await controlPlane?.close();
        await Promise.allSettled([bus.close(), this.store.close(), cache.close()]);
      },
    };
    await adapters.bus.ensureTopics(coreTopicSpecs(topics, { partitions: 1, replicationFactor: 1 }));
    // What the sinks and ingest would have registered in the same process.
    new Counter({ name: 'orrery_sink_events_delivered_total', help: 'h', labelNames: ['destination'], registers: [registry] }).inc({ destination: 'hook' }, 7);
    new Counter({ name: 'orrery_sink_delivery_failures_total', help: 'h', labelNames: ['destination', 'retriable'], registers: [registry] }).inc({ destination: 'hook', retriable: 'true' }, 2);
    new Counter({ name: 'orrery_ingest_events_accepted_total', help: 'h', labelNames: ['source'], registers: [registry] }).inc({ source: 'web' }, 9);
    new Gauge({ name: 'orrery_ingest_spool_depth', help: 'h', registers: [registry] }).set(0);
    await seedControlPlane(adapters.store, {
      sources: [{ id: 'web', writeKeys: ['web-write-key-1'], writeKeyHashes: [], enabled: true, allowedOrigins: ['*'] }],
      destinations: [
        { id: 'hook', type: 'webhook', enabled: true, url: 'https://user:pw@hooks.example.com/x', secret: 'whsec_c2VjcmV0', headers: { 'x-api-key': 'k' } },
        // Posts to the demo receiver: its secret is the one the receiver takes.
        { id: 'demo', type: 'webhook', enabled: true, url: 'http://127.0.0.1:8080/pilot/demo-webhook', allowPrivateNetwork: true, secret: DEMO_SECRET },
      ],
      routes: [{ source: 'web', destination: 'hook', enabled: true, transforms: [] }],
    }, logger);
    controlPlane = await createPgControlPlane({ store: adapters.store, logger, pollMs: 3_600_000 });
    pilot = await createPilotComponent(
      { config, logger, registry, adapters, topics, controlPlane },
      { pilot: pilotConfigFrom({ PILOT_ADMIN_TOKEN: TOKEN, PILOT_SAMPLE_MS: '200', PILOT_STREAM_MAX_MS: '1500' }) },
    );
  });

  afterAll(async () => {
    await pilot?.stop();
    await adapters?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses requests without the token, or with a wrong one, with a JSON code', async () => {
    const missing = await request('/api/sources', {}, null);
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(await missing.json()).toMatchObject({ success: false, code: 'missing_token' });
    const wrong = await request('/api/sources', {}, 'not-the-token');
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ code: 'invalid_token' });
    expect((await request('/api/sources')).status).toBe(200);
  });

  it('serves the OpenAPI document without a token', async () => {
    const res = await request('/api/openapi.json', {}, null);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/api/sources', '/api/destinations/{id}', '/api/routes/{source}/{destination}', '/api/dead-letters/replay', '/api/debugger/stream']));
  });

  it('the OpenAPI document states the rules the API applies', async () => {
    type Op = { parameters?: Array<{ name: string; in: string; schema: Record<string, unknown> }>; requestBody?: { required: boolean; content: Record<string, { schema: Record<string, unknown> }> }; responses: Record<string, unknown> };
    const doc = (await (await request('/api/openapi.json', {}, null)).json()) as { paths: Record<string, Record<string, Op>> };
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        // Whatever takes input can refuse it: a 400 on every such operation of the API.
        if (path.startsWith('/api/') && (op.requestBody || op.parameters?.some((p) => p.in === 'query'))) expect(Object.keys(op.responses), `${method} ${path}`).toContain('400');
      }
    }
    const params = (path: string, method: string) => Object.fromEntries(doc.paths[path]![method]!.parameters!.map((p) => [p.name, p.schema]));
    expect(params('/api/deploys', 'get').limit).toEqual({ type: 'integer', minimum: 1, maximum: 500 });
    expect(params('/api/routes/{source}/{destination}', 'delete').expectedVersion).toEqual({ type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
    expect(doc.paths['/api/sources']!.post!.requestBody!.required).toBe(true);
    expect(doc.paths['/api/sources/{id}/enable']!.post!.requestBody!.required).toBe(false);
    const destination = (doc.paths['/api/destinations']!.post!.requestBody!.content['application/json']!.schema as { properties: { destination: { anyOf: Array<{ properties: { type: unknown } }> } } }).properties.destination;
    expect(destination.anyOf.map((d) => d.properties.type)).toEqual(['webhook', 'amplitude', 'mixpanel', 'ga4', 'slack', 'warehouse'].map((t) => ({ const: t })));
    const stream = doc.paths['/api/debugger/stream']!.get!.responses['200'] as { content: Record<string, { schema: { anyOf: Array<{ properties: { event: unknown } }> } }> };
    expect(stream.content['text/event-stream']!.schema.anyOf.map((e) => e.properties.event)).toEqual(['hello', 'event', 'delivered', 'bye'].map((e) => ({ const: e })));
  });

  it('refuses what the document refuses: query values out of range, flags that are not true or false, U+0000, ids that are not numbers', async () => {
    for (const path of ['/api/debugger/events?limit=', '/api/debugger/events?limit=0', '/api/deploys?limit=501', '/api/debugger/stream?since=-1']) {
      const res = await request(path);
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as { code: string }).code).toBe('invalid_request');
    }
    expect((await request('/api/destinations/hook?cascade=yes', { method: 'DELETE' })).status).toBe(400);
    // Checked before the write: PostgreSQL refuses U+0000 in JSON.
    const nul = await request('/api/sources', { method: 'POST', body: JSON.stringify({ id: 'app', name: 'a\u0000b' }) });
    expect(nul.status).toBe(400);
    expect(((await nul.json()) as { details: unknown }).details).toEqual({ issues: [{ path: 'name', message: expect.stringMatching(/U\+0000/) }] });
    // "replay" is no dead letter id: POST is the only method there (405 as `orrery start` serves it).
    const app = new Hono().route('/', pilot.routes!);
    app.notFound(unmatchedRoutes(app));
    const replay = await app.request('/api/dead-letters/replay', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(replay.status).toBe(405);
    expect(replay.headers.get('allow')).toBe('POST');
  });

  it('checks a destination with its own settings: a vendor destination passes and is stored', async () => {
    for (const destination of [
      { id: 'amp', type: 'amplitude', name: 'Amplitude', apiKey: 'amp-key' },
      { id: 'ga', type: 'ga4', enabled: true, measurementId: 'G-ABC123XYZ9', apiSecret: 's' },
    ]) {
      const res = await request('/api/destinations', { method: 'POST', body: JSON.stringify({ destination }) });
      expect(res.status, destination.type).toBe(201);
    }
    expect((await request('/api/destinations', { method: 'POST', body: JSON.stringify({ destination: { id: 'amp', type: 'amplitude', apiKey: 'k', region: 'mars' } }) })).status).toBe(400);
  });

  it('shows sources without their keys and destinations without their secrets', async () => {
    const cfg = (await (await request('/api/config')).json()) as Record<string, unknown>;
    const text = JSON.stringify(cfg);
    expect(text).not.toContain('web-write-key-1');
    expect(text).not.toContain('whsec_');
    expect(text).not.toContain(':pw@');
    // Version 3: the seed, then the two destinations the case above added.
    expect(cfg).toMatchObject({ version: 3, sources: [{ id: 'web', keys: [{ id: expect.stringMatching(/^[0-9a-f]{12}$/) }] }] });
    expect((cfg.destinations as unknown[])[0]).toMatchObject({ secret: '[redacted]', headers: { 'x-api-key': '[redacted]' } });
  });

  it('lists the dead letters from the store: none yet', async () => {
    const res = await request('/api/dead-letters');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ deadLetters: [] });
  });

  it('validates bodies before anything else: 400 invalid_request with the issues', async () => {
    const res = await request('/api/sources', { method: 'POST', body: JSON.stringify({ id: 'has spaces', bogus: 1 }) });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; details: { issues: Array<{ path: string }> } };
    expect(body.code).toBe('invalid_request');
    expect(body.details.issues.map((i) => i.path).sort()).toEqual(['', 'id']);
    expect((await request('/api/sources', { method: 'POST', body: '{nope' })).status).toBe(400);
  });

  it('the debugger shows events from the raw topic, per source, and streams them as SSE', async () => {
    await waitFor(async () => ((await (await request('/api/debugger/status')).json()) as { ready: boolean }).ready);
    const envelope = (i: number, sourceId = 'web') => ({
      v: 1,
      sourceId,
      type: 'track',
      event: `Step ${i}`,
      userId: 'u1',
      messageId: `m-${sourceId}-${i}`,
      timestamp: new Date().toISOString(),
      receivedAt: new Date().toISOString(),
    });
    await adapters.bus.produce(topics.raw, [1, 2].map((i) => ({ key: `web:u1`, value: JSON.stringify(envelope(i)) })));
    await adapters.bus.produce(topics.raw, [{ key: 'app:u2', value: JSON.stringify(envelope(1, 'app')) }, { key: 'app:u3', value: 'not json' }]);
    const events = await waitFor(async () => {
      const body = (await (await request('/api/debugger/events?source=web')).json()) as { events: Array<{ seq: number; event: { messageId: string } }> };
      return body.events.length === 2 ? body.events : undefined;
    });
    expect(events.map((e) => e.event.messageId)).toEqual(['m-web-1', 'm-web-2']);
    const app = await waitFor(async () => {
      const body = (await (await request('/api/debugger/events?source=app')).json()) as { events: Array<{ valid: boolean; error?: string }> };
      return body.events.length === 2 ? body.events : undefined;
    });
    // Poison is shown (filed under the source in its key), not dropped.
    expect(app.map((e) => e.valid)).toEqual([true, false]);
    expect(app[1]!.error).toMatch(/JSON/);

    // The stream replays what came after the cursor, then follows, then says bye.
    const res = await request(`/api/debugger/stream?since=${events[0]!.seq}`);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    const produced = adapters.bus.produce(topics.raw, [{ key: 'web:u1', value: JSON.stringify(envelope(3)) }]);
    const delivered = JSON.stringify(envelope(9));
    const demo = pilot.routes!.request('/pilot/demo-webhook', { method: 'POST', body: delivered, headers: { 'content-type': 'application/json', ...standardWebhookHeaders(DEMO_SECRET, 'm-web-9', delivered, Date.now()) } });
    await Promise.all([produced, demo]);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const blocks = text.split('\n\n').filter((b) => b.startsWith('event:'));
    expect(blocks[0]).toMatch(/^event: hello\n/);
    const names = blocks.map((b) => /^event: (\w+)/.exec(b)![1]);
    expect(names.at(-1)).toBe('bye');
    const seen = blocks.filter((b) => b.startsWith('event: event')).map((b) => JSON.parse(/data: (.*)/.exec(b)![1]!).event.messageId);
    expect(seen).toContain('m-web-2');
    expect(seen).toContain('m-web-3');
    expect(seen).not.toContain('m-web-1');
    expect(text).toMatch(/event: delivered\ndata: .*"webhookId":"m-web-9"/);
  });

  it('summarises the registry per destination and for ingest, and samples it for the charts', async () => {
    const summary = (await (await request('/api/metrics/summary')).json()) as Record<string, any>;
    expect(summary.destinations.hook).toEqual({ delivered: 7, failed: 2, retries: 0, deadLettered: 0, routed: 0 });
    expect(summary.ingest).toMatchObject({ accepted: 9, rejected: 0, acceptedBySource: { web: 9 }, spoolDepth: 0 });
    const series = await waitFor(async () => {
      const s = (await (await request('/api/metrics/series')).json()) as { points: unknown[] };
      return s.points.length >= 2 ? s : undefined;
    });
    expect(series.points[0]).toMatchObject({ ingest: { accepted: 0, rejected: 0 }, destinations: { hook: { delivered: 0, failed: 0, deadLettered: 0 } } });
    const alerts = (await (await request('/api/alerts')).json()) as { webhookConfigured: boolean; rules: unknown[] };
    expect(alerts.webhookConfigured).toBe(false);
    expect(alerts.rules).toHaveLength(5);
  });

  it('serves the UI pages and their assets with a strict CSP', async () => {
    for (const path of ['/', '/ui/health', '/ui/dead-letters', '/ui/deploys', '/ui/config']) {
      const res = await pilot.routes!.request(path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
      const html = await res.text();
      expect(html).toContain('<script src="/ui/assets/pilot.js" defer></script>');
      expect(html).not.toContain(TOKEN);
    }
    expect((await pilot.routes!.request('/ui/assets/pilot.js')).headers.get('content-type')).toMatch(/javascript/);
    // The deploy log in the store (gitops not passed in): none yet, an empty list.
    expect(await (await request('/api/deploys')).json()).toEqual({ deploys: [], available: true });
  });
});

describe('destination secrets', () => {
  it('redacts secret-looking settings, header values and URL passwords; restores them on update', () => {
    const stored = { id: 'a', type: 'mixpanel', username: 'sa', secret: 's3', projectId: '1', headers: { authorization: 'Bearer x' }, url: 'https://u:p@h/x', allowPrivateNetwork: true };
    const shown = redactDestination(stored);
    expect(shown).toEqual({ id: 'a', type: 'mixpanel', username: 'sa', secret: '[redacted]', projectId: '1', headers: { authorization: '[redacted]' }, url: 'https://u:%5Bredacted%5D@h/x', allowPrivateNetwork: true });
    expect(restoreRedacted({ ...shown, projectId: '2' }, stored)).toEqual({ ...stored, projectId: '2' });
    expect(() => restoreRedacted({ apiKey: '[redacted]' }, {})).toThrow(/no stored value/);
  });
});

async function waitFor<T>(check: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}
