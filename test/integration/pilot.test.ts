import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniqueName, waitFor } from '../helpers/index.ts';
import { realServicesEnv, startOrrery, webToHookConfig, type OrreryProcess } from '../helpers/process.ts';
import { startReceiver } from '../helpers/receiver.ts';

/**
 * Pilot inside the whole platform (`orrery start`: ingest, router, sinks, gitops, pilot in
 * one process) on real Kafka, Postgres and Redis: the API's auth, sources whose new keys
 * ingest at once, versioned destination and route changes, dead letters and their replay,
 * the metrics summary, and an alert that fires to a local receiver and resolves.
 */
const TOKEN = 'pilot-integration-token-0123456789';
const SEED_KEY = 'pilot-seed-write-key';

type Json = Record<string, any>;

describe('pilot: API over the running platform', () => {
  let orrery: OrreryProcess;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let alerts: Awaited<ReturnType<typeof startReceiver>>;
  const tag = uniqueName('p');

  async function api(method: string, path: string, body?: unknown, token: string | null = TOKEN): Promise<{ status: number; body: Json }> {
    const res = await fetch(`${orrery.url}${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Json };
  }

  const track = (key: string, event: object) =>
    fetch(`${orrery.url}/v1/track`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Basic ${btoa(`${key}:`)}` },
      body: JSON.stringify(event),
    });

  beforeAll(async () => {
    receiver = await startReceiver();
    alerts = await startReceiver();
    const dir = await webToHookConfig('pilot', SEED_KEY, receiver.url);
    orrery = await startOrrery(['start'], {
      ...realServicesEnv(dir, 'pilot'),
      SINKS_BACKOFF_INITIAL_MS: '100',
      SINKS_BACKOFF_MAX_MS: '400',
      SINKS_MAX_AGE_MS: '1500',
      SINKS_MAX_ATTEMPTS: '50',
      PILOT_ADMIN_TOKEN: TOKEN,
      PILOT_ALERT_WEBHOOK: alerts.url,
      PILOT_ALERT_INTERVAL_MS: '300',
      PILOT_ALERT_WINDOW_MS: '3000',
      PILOT_ALERT_FOR_MS: '500',
      PILOT_SAMPLE_MS: '500',
    });
    const probe = await fetch(`${orrery.url}/api/openapi.json`);
    if (probe.status === 404) throw new Error('Pilot is not part of `orrery start`: add `pilot: createPilotComponent` (pilot/main.ts) to COMPONENTS in bin/orrery.ts');
  });

  afterAll(async () => {
    await orrery?.stop();
    await receiver?.close();
    await alerts?.close();
  });

  it('asks for the admin token: 401 with a code without it or with a wrong one; the OpenAPI document is open', async () => {
    expect(await api('GET', '/api/sources', undefined, null)).toMatchObject({ status: 401, body: { success: false, code: 'missing_token' } });
    expect(await api('GET', '/api/sources', undefined, `${TOKEN}x`)).toMatchObject({ status: 401, body: { code: 'invalid_token' } });
    const basic = await fetch(`${orrery.url}/api/sources`, { headers: { authorization: `Basic ${btoa(`${TOKEN}:`)}` } });
    expect(basic.status).toBe(401);
    expect((await api('GET', '/api/sources')).status).toBe(200);
    const doc = await (await fetch(`${orrery.url}/api/openapi.json`)).json();
    expect(doc).toMatchObject({ openapi: '3.1.0', components: { securitySchemes: { adminToken: { scheme: 'bearer' } } } });
  });

  it('a source created through the API gets a key, shown once, that ingests at once; rotation and disabling apply live', async () => {
    const created = await api('POST', '/api/sources', { id: 'app', name: 'Mobile app' });
    expect(created.status).toBe(201);
    const { writeKey, keyId, version } = created.body as { writeKey: string; keyId: string; version: number };
    expect(writeKey).toMatch(/^wk_[A-Za-z0-9_-]{32}$/);
    expect(created.body.source).toEqual({ id: 'app', name: 'Mobile app', enabled: true, allowedOrigins: ['*'], keys: [{ id: keyId }] });
    // The key itself is never shown again, nor stored.
    const listed = await api('GET', '/api/sources');
    expect(JSON.stringify(listed.body)).not.toContain(writeKey);
    expect(listed.body.version).toBeGreaterThanOrEqual(version);
    expect((await api('POST', '/api/sources', { id: 'app' })).body.code).toBe('source_exists');

    await waitFor(async () => (await track(writeKey, { userId: 'u1', event: 'Warmup', messageId: `${tag}-warm` })).status === 200, { what: 'the new key to ingest' });

    // The debugger shows the source's events (its consumer starts at the latest offset, so wait until it follows).
    await waitFor(async () => (await api('GET', '/api/debugger/status')).body.ready === true, { timeoutMs: 30_000, what: 'the debugger to follow the raw topic' });
    const seen = await waitFor(
      async () => {
        expect((await track(writeKey, { userId: 'u1', event: 'App Opened', messageId: `${tag}-app-${Date.now()}` })).status).toBe(200);
        const { body } = await api('GET', '/api/debugger/events?source=app');
        return body.events.find((e: Json) => e.event.event === 'App Opened');
      },
      { timeoutMs: 30_000, intervalMs: 1000, what: 'the event in the debugger' },
    );
    expect(seen).toMatchObject({ sourceId: 'app', valid: true, event: { type: 'track', userId: 'u1', sourceId: 'app' } });
    expect(JSON.stringify(seen)).not.toContain(writeKey);

    const rotated = await api('POST', '/api/sources/app/rotate-key', { removeOld: true });
    expect(rotated.status).toBe(200);
    const newKey = rotated.body.writeKey as string;
    expect(rotated.body.source.keys).toEqual([{ id: rotated.body.keyId }]);
    await waitFor(async () => (await track(writeKey, { userId: 'u1', event: 'E' })).status === 401, { what: 'the old key to stop working' });
    expect((await track(newKey, { userId: 'u1', event: 'E' })).status).toBe(200);

    expect((await api('POST', '/api/sources/app/disable', {})).body.source.enabled).toBe(false);
    await waitFor(async () => {
      const res = await track(newKey, { userId: 'u1', event: 'E' });
      return res.status === 401 && ((await res.json()) as Json).code === 'source_disabled';
    }, { what: 'the source to be disabled' });
    expect((await api('POST', '/api/sources/app/enable', {})).body.source.enabled).toBe(true);
    await waitFor(async () => (await track(newKey, { userId: 'u1', event: 'E' })).status === 200, { what: 'the source to be enabled again' });
    expect((await api('POST', '/api/sources/nope/disable', {})).status).toBe(404);
  });

  it('destinations and routes: create, update, delete, validated and versioned (409 on a stale version)', async () => {
    const { version: v0 } = (await api('GET', '/api/destinations')).body as { version: number };
    const audit = { id: 'audit', type: 'webhook', url: 'https://audit.example.com/in', secret: `whsec_${Buffer.from('audit-secret-0123456789').toString('base64')}` };
    const created = await api('POST', '/api/destinations', { destination: audit, expectedVersion: v0 });
    expect(created.status).toBe(201);
    expect(created.body.destination).toMatchObject({ id: 'audit', secret: '[redacted]' });
    const v1 = created.body.version as number;
    expect(v1).toBeGreaterThan(v0);

    // Someone else's change in between: the stale version is refused and nothing is written.
    const stale = await api('POST', '/api/destinations', { destination: { id: 'other', type: 'webhook', url: 'https://o.example.com/' }, expectedVersion: v0 });
    expect(stale).toMatchObject({ status: 409, body: { code: 'control_plane_conflict', details: { expectedVersion: v0, currentVersion: v1 } } });
    expect((await api('GET', '/api/destinations')).body.destinations.map((d: Json) => d.id)).not.toContain('other');

    // Settings are checked by the destination type's own schema.
    const bad = await api('POST', '/api/destinations', { destination: { id: 'broken', type: 'webhook', url: 'ftp://x' } });
    expect(bad).toMatchObject({ status: 400, body: { code: 'invalid_request' } });
    expect((await api('POST', '/api/destinations', { destination: { id: 'x', type: 'carrier-pigeon' } })).status).toBe(400);
    // A literal private address needs the opt-in when the destination is created, not only at delivery.
    const inside = await api('POST', '/api/destinations', { destination: { id: 'inside', type: 'webhook', url: 'http://[::127.0.0.1]:1/' } });
    expect(inside).toMatchObject({ status: 400, body: { code: 'invalid_request', message: expect.stringMatching(/url: .* private or reserved address: set allowPrivateNetwork: true/) } });

    // An update that sends the secret back redacted keeps the stored one.
    const updated = await api('PUT', '/api/destinations/audit', { destination: { ...created.body.destination, url: 'https://audit.example.com/v2' }, expectedVersion: v1 });
    expect(updated.status).toBe(200);
    const v2 = updated.body.version as number;
    expect((await api('PUT', '/api/destinations/audit', { destination: { type: 'webhook', url: 'https://x.example.com/' }, expectedVersion: v1 })).status).toBe(409);

    const route = { source: 'web', destination: 'audit', filter: { events: ['Order Completed'] } };
    const routed = await api('POST', '/api/routes', { route, expectedVersion: v2 });
    expect(routed.status).toBe(201);
    const v3 = routed.body.version as number;
    expect((await api('POST', '/api/routes', { route })).body.code).toBe('route_exists');
    expect(await api('POST', '/api/routes', { route: { source: 'web', destination: 'ghost' } })).toMatchObject({ status: 409, body: { code: 'no_such_destination' } });
    expect(await api('POST', '/api/routes', { route: { source: 'ghost', destination: 'audit' } })).toMatchObject({ status: 409, body: { code: 'no_such_source' } });
    const changed = await api('PUT', '/api/routes/web/audit', { route: { enabled: false, transforms: [{ op: 'drop', field: 'context.ip' }] }, expectedVersion: v3 });
    expect(changed.body.route).toMatchObject({ source: 'web', destination: 'audit', enabled: false });
    expect((await api('DELETE', `/api/routes/web/audit?expectedVersion=${v3}`)).status).toBe(409);

    expect((await api('DELETE', '/api/destinations/audit')).body.code).toBe('destination_in_use');
    expect((await api('DELETE', '/api/routes/web/audit')).status).toBe(200);
    expect((await api('DELETE', '/api/destinations/audit')).status).toBe(200);

    const cfg = (await api('GET', '/api/config')).body;
    expect(cfg.destinations.map((d: Json) => d.id)).toEqual(['hook']);
    expect(cfg.routes).toEqual([{ source: 'web', destination: 'hook', enabled: true, transforms: [] }]);
    const stored = JSON.stringify(cfg);
    expect(stored).not.toContain('audit-secret');
  });

  it('dead letters: listed with their story, replayed once the receiver recovers; an alert fires and resolves', async () => {
    receiver.state.respond = () => 500;
    const ids = [0, 1, 2].map((i) => `${tag}-dl-${i}`);
    // Three users: the sink retries each user's events in its own lane, side by side.
    for (const [i, messageId] of ids.entries()) expect((await track(SEED_KEY, { userId: `${tag}-u${i}`, event: 'Doomed', messageId })).status).toBe(200);

    const letters = await waitFor(
      async () => {
        const { body } = await api('GET', '/api/dead-letters?destination=hook');
        return body.deadLetters.length === 3 ? body : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500, what: 'three dead letters' },
    );
    expect(letters.deadLetters.map((l: Json) => l.messageId).sort()).toEqual(ids);
    expect(letters.deadLetters[0]).toMatchObject({ destinationId: 'hook', httpStatus: 500, responseExcerpt: '{"error":"unavailable"}', replayedAt: null });
    expect(letters.pending).toEqual({ hook: 3 });
    const one = await api('GET', `/api/dead-letters/${letters.deadLetters[0].id}`);
    expect(one.body).toMatchObject({ messageId: letters.deadLetters[0].messageId, event: { event: 'Doomed', sourceId: 'web' } });
    expect((await api('GET', '/api/dead-letters/999999999')).status).toBe(404);

    // The failures fire an alert at the local receiver: failure rate, and dead letters growing.
    const firing = await waitFor(() => alerts.accepted().filter((b) => b.status === 'firing'), { timeoutMs: 20_000, what: 'a firing alert' });
    expect(firing.map((b) => (b.alert as Json).key)).toEqual(expect.arrayContaining(['dead-letters-growing:hook']));
    expect(firing[0]).toMatchObject({ text: expect.stringMatching(/^\[FIRING\] /), alert: { labels: { destination: 'hook' } } });
    // The API shows what was sent (the alert itself may have resolved already: the window is 3 s here).
    expect((await api('GET', '/api/alerts')).body.recent).toContainEqual(expect.objectContaining({ status: 'firing', key: 'dead-letters-growing:hook' }));

    const summary = (await api('GET', '/api/metrics/summary')).body;
    expect(summary.destinations.hook.deadLettered).toBe(3);
    expect(summary.destinations.hook.failed).toBeGreaterThanOrEqual(3);
    expect(summary.deadLettersPending).toEqual({ hook: 3 });
    expect(summary.ingest.accepted).toBeGreaterThanOrEqual(3);
    // The refused keys of the previous test were counted by code.
    expect(summary.ingest.rejectedByCode).toMatchObject({ invalid_write_key: expect.any(Number), source_disabled: expect.any(Number) });

    // A replay while the receiver still fails leaves them pending, with the error.
    const failedReplay = await api('POST', '/api/dead-letters/replay', { destinationId: 'hook' });
    expect(failedReplay.body.replayed).toEqual([]);
    expect(failedReplay.body.failed).toHaveLength(3);

    receiver.state.respond = () => 200;
    const replay = await api('POST', '/api/dead-letters/replay', { destinationId: 'hook' });
    expect(replay.status).toBe(200);
    expect(replay.body.replayed).toHaveLength(3);
    expect(replay.body.failed).toEqual([]);
    // Each delivered once.
    expect(receiver.accepted().filter((b) => ids.includes(b.messageId as string)).map((b) => b.messageId).sort()).toEqual(ids);
    expect((await api('GET', '/api/dead-letters?destination=hook')).body.deadLetters).toEqual([]);
    expect((await api('GET', '/api/dead-letters?destination=hook&includeReplayed=true')).body.deadLetters.map((l: Json) => l.replayAttempts)).toEqual([2, 2, 2]);
    expect((await api('POST', '/api/dead-letters/replay', { destinationId: 'hook' })).body.replayed).toEqual([]);

    // Healthy again: once the window has passed, every firing alert resolves, once.
    for (let i = 0; i < 5; i++) expect((await track(SEED_KEY, { userId: `${tag}-u`, event: 'Fine', messageId: `${tag}-ok-${i}` })).status).toBe(200);
    const notified = () => {
      const byKey = new Map<string, string[]>();
      for (const b of alerts.accepted()) byKey.set((b.alert as Json).key, [...(byKey.get((b.alert as Json).key) ?? []), b.status as string]);
      return byKey;
    };
    const byKey = await waitFor(
      async () => {
        const map = notified();
        return [...map.values()].every((statuses) => statuses.at(-1) === 'resolved') && (await api('GET', '/api/alerts')).body.active.length === 0 ? map : undefined;
      },
      { timeoutMs: 30_000, what: 'every alert resolved' },
    );
    // De-duplicated: an alert never notifies "firing" twice without a resolve in between (dead
    // letters recorded seconds apart may fire, resolve and fire again: the window is short here).
    for (const [key, statuses] of byKey) {
      expect(statuses.length % 2, key).toBe(0);
      statuses.forEach((status, i) => expect(status, `${key} #${i}`).toBe(i % 2 === 0 ? 'firing' : 'resolved'));
    }
    expect((await api('GET', '/api/alerts')).body.active).toEqual([]);
  });

  it('deploys and image policies answer from the deploy log and the config', async () => {
    expect((await api('GET', '/api/deploys')).body).toEqual({ deploys: [], available: true });
    expect((await api('GET', '/api/deploys/1')).status).toBe(404);
    // No gitops section: the embedded GitOps default's policies, from the example environment's render.
    const { policies } = (await api('GET', '/api/image-policies')).body as { policies: Array<{ name: string }> };
    expect(policies.map((p) => p.name)).toEqual(['web-analytics-airflow', 'ml-airflow', 'orrery-ingest', 'orrery-router', 'orrery-sinks', 'orrery-gitops']);
  });
});

describe('pilot: the generated admin token', () => {
  it('is printed once on stderr when PILOT_ADMIN_TOKEN is not set, never logged, and works', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orrery-pilot-token-'));
    const orrery = await startOrrery(['start', 'pilot'], { ORRERY_DATA_DIR: join(dir, 'data'), KAFKA_BROKERS: '', DATABASE_URL: '', REDIS_URL: '', PILOT_ADMIN_TOKEN: '' });
    const printed = () => /generated an admin token for this run: (\S+)/.exec(orrery.stderr())?.[1];
    try {
      const token = await waitFor(printed, { what: 'the token on stderr' });
      const line = orrery.logs.find((l) => l.adminToken === 'generated');
      // Resolved once by the composition root, for every component that serves a protected endpoint.
      expect(line).toMatchObject({ level: 'info', component: 'auth' });
      const res = await fetch(`${orrery.url}/api/config`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
      expect((await fetch(`${orrery.url}/api/config`)).status).toBe(401);
    } finally {
      await orrery.stop();
    }
    const token = printed()!;
    expect(orrery.logs.filter((l) => JSON.stringify(l).includes(token))).toHaveLength(0);
    expect(orrery.stderr().split(token)).toHaveLength(2);
  });
});
