import { describe, expect, it } from 'vitest';
import { createMemoryCache } from '../core/cache/memory.ts';
import { decodeEnvelope, type Envelope } from '../core/envelope.ts';
import { OrreryError } from '../core/errors.ts';
import { createIngestApp, type IngestDeps, type IngestRecord } from './app.ts';
import { createConfigSourceResolver, hashWriteKey } from './sources.ts';

const KEY = 'wk_test_1234567890';
const RECEIVED = Date.parse('2026-11-27T12:00:00.000Z');

async function setup(over: Partial<Omit<IngestDeps, 'sources'>> & { sources?: Parameters<typeof createConfigSourceResolver>[0] } = {}) {
  const sent: IngestRecord[][] = [];
  const sources = await createConfigSourceResolver(
    over.sources ?? [
      { id: 'web', writeKeys: [KEY], writeKeyHashes: [], enabled: true, allowedOrigins: ['*'] },
      { id: 'off', writeKeys: ['wk_disabled_123'], writeKeyHashes: [], enabled: false, allowedOrigins: ['*'] },
      { id: 'shop', writeKeys: [], writeKeyHashes: [await hashWriteKey('wk_shop_12345')], enabled: true, allowedOrigins: ['https://shop.example'] },
    ],
  );
  const app = createIngestApp({
    handoff: {
      async send(records) {
        sent.push(records);
        return 'bus';
      },
    },
    now: () => RECEIVED,
    newId: () => 'generated-id',
    clientIp: () => '203.0.113.7',
    ...over,
    sources,
  } as IngestDeps);
  const events = () => sent.flat().map((r) => ({ key: r.key, envelope: (decodeEnvelope(r.value) as { envelope: Envelope }).envelope }));
  return { app, sent, events };
}

const basic = (key: string) => `Basic ${btoa(`${key}:`)}`;
function post(app: Awaited<ReturnType<typeof setup>>['app'], path: string, body: unknown, headers: Record<string, string> = {}) {
  return app.request(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: basic(KEY), ...headers },
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
}

describe('ingest: calls and enrichment', () => {
  it('accepts a track call and hands off the enriched envelope, keyed by source and user', async () => {
    const { app, events } = await setup();
    const res = await post(app, '/v1/track', { userId: 'u1', event: 'Signed Up', properties: { plan: 'pro' } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ success: true });
    const [e] = events();
    expect(e!.key).toBe('web:u1');
    expect(e!.envelope).toMatchObject({
      v: 1,
      sourceId: 'web',
      type: 'track',
      event: 'Signed Up',
      userId: 'u1',
      messageId: 'generated-id',
      properties: { plan: 'pro' },
      context: { ip: '203.0.113.7' },
      receivedAt: '2026-11-27T12:00:00.000Z',
      timestamp: '2026-11-27T12:00:00.000Z',
    });
    expect(JSON.stringify(e!.envelope)).not.toContain(KEY);
  });

  it.each([
    ['/v1/identify', 'identify'],
    ['/v1/i', 'identify'],
    ['/v1/page', 'page'],
    ['/v1/p', 'page'],
    ['/v1/screen', 'screen'],
    ['/v1/s', 'screen'],
    ['/v1/t', 'track'],
  ])('%s is a %s call', async (path, type) => {
    const { app, events } = await setup();
    const res = await post(app, path, { anonymousId: 'a1', event: 'E', name: 'Home' });
    expect(res.status).toBe(200);
    expect(events()[0]!.envelope.type).toBe(type);
    expect(events()[0]!.key).toBe('web:a1');
  });

  it('group needs groupId and alias needs previousId', async () => {
    const { app } = await setup();
    expect((await post(app, '/v1/group', { userId: 'u' })).status).toBe(400);
    expect(await (await post(app, '/v1/g', { userId: 'u' })).json()).toMatchObject({ code: 'missing_group_id' });
    expect((await post(app, '/v1/group', { userId: 'u', groupId: 42 })).status).toBe(200);
    expect(await (await post(app, '/v1/alias', { userId: 'u' })).json()).toMatchObject({ code: 'missing_previous_id' });
    expect((await post(app, '/v1/a', { userId: 'u', previousId: 'anon' })).status).toBe(200);
  });

  it('keeps a messageId the client sent, and refuses one over 100 characters', async () => {
    const { app, events } = await setup();
    await post(app, '/v1/track', { userId: 'u', event: 'E', messageId: 'client-id' });
    expect(events()[0]!.envelope.messageId).toBe('client-id');
    const res = await post(app, '/v1/track', { userId: 'u', event: 'E', messageId: 'x'.repeat(101) });
    expect(await res.json()).toMatchObject({ code: 'message_id_too_long' });
  });

  it('corrects the timestamp for clock skew: timestamp = receivedAt − (sentAt − originalTimestamp)', async () => {
    const { app, events } = await setup();
    // The device clock runs 1 h fast: it stamped the event at 13:00:00 and sent it 5 s later.
    await post(app, '/v1/track', { userId: 'u', event: 'E', timestamp: '2026-11-27T13:00:00.000Z', sentAt: '2026-11-27T13:00:05.000Z' });
    expect(events()[0]!.envelope).toMatchObject({
      originalTimestamp: '2026-11-27T13:00:00.000Z',
      sentAt: '2026-11-27T13:00:05.000Z',
      timestamp: '2026-11-27T11:59:55.000Z',
      receivedAt: '2026-11-27T12:00:00.000Z',
    });
  });

  it('without sentAt the client timestamp stands', async () => {
    const { app, events } = await setup();
    await post(app, '/v1/track', { userId: 'u', event: 'E', timestamp: '2026-11-20T08:00:00Z' });
    expect(events()[0]!.envelope.timestamp).toBe('2026-11-20T08:00:00.000Z');
  });

  it('refuses a timestamp that is not a date', async () => {
    const { app } = await setup();
    expect(await (await post(app, '/v1/track', { userId: 'u', event: 'E', timestamp: 'yesterday' })).json()).toMatchObject({
      code: 'invalid_timestamp',
      details: { field: 'timestamp' },
    });
  });

  it('keeps a context.ip the client set', async () => {
    const { app, events } = await setup();
    await post(app, '/v1/track', { userId: 'u', event: 'E', context: { ip: '198.51.100.1' } });
    expect(events()[0]!.envelope.context).toEqual({ ip: '198.51.100.1' });
  });

  it('coerces numeric ids to strings and drops explicit nulls', async () => {
    const { app, events } = await setup();
    await post(app, '/v1/identify', { userId: 12345, anonymousId: null, traits: { email: 'a@b.c' } });
    const env = events()[0]!.envelope;
    expect(env.userId).toBe('12345');
    expect('anonymousId' in env).toBe(false);
  });
});

describe('ingest: batch', () => {
  it('merges batch-level context, integrations and sentAt into each item', async () => {
    const { app, events } = await setup();
    const res = await post(app, '/v1/batch', {
      batch: [
        { type: 'track', userId: 'u1', event: 'A', context: { page: { path: '/a' } }, timestamp: '2026-11-27T11:59:00Z' },
        { type: 'identify', anonymousId: 'a2', integrations: { Amplitude: false } },
      ],
      context: { library: { name: 'analytics-node', version: '2' }, page: { path: '/batch' } },
      integrations: { All: true },
      sentAt: '2026-11-27T11:59:00Z',
    });
    expect(res.status).toBe(200);
    const [a, b] = events();
    expect(a!.envelope.context).toEqual({ library: { name: 'analytics-node', version: '2' }, page: { path: '/a' }, ip: '203.0.113.7' });
    expect(a!.envelope.integrations).toEqual({ All: true });
    expect(a!.envelope.timestamp).toBe('2026-11-27T12:00:00.000Z');
    expect(b!.envelope.integrations).toEqual({ All: true, Amplitude: false });
    expect(b!.key).toBe('web:a2');
  });

  it('/v1/import and /v1/b are batch endpoints too', async () => {
    const { app, sent } = await setup();
    expect((await post(app, '/v1/import', { batch: [{ type: 'page', userId: 'u' }] })).status).toBe(200);
    expect((await post(app, '/v1/b', { batch: [{ type: 'page', userId: 'u' }] })).status).toBe(200);
    expect(sent).toHaveLength(2);
  });

  it('hands off a whole batch in one call', async () => {
    const { app, sent } = await setup();
    const batch = Array.from({ length: 100 }, (_, i) => ({ type: 'track', userId: `u${i % 7}`, event: 'E' }));
    expect((await post(app, '/v1/batch', { batch })).status).toBe(200);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toHaveLength(100);
  });

  it('refuses the whole batch when an item is invalid, naming its index', async () => {
    const { app, sent } = await setup();
    const res = await post(app, '/v1/batch', { batch: [{ type: 'track', userId: 'u', event: 'ok' }, { type: 'track', userId: 'u' }, { event: 'x' }] });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ success: false, code: 'missing_event', details: { index: 1 } });
    expect(sent).toHaveLength(0);
  });

  it.each([
    [{ batch: [{ userId: 'u', event: 'E' }] }, 'missing_type', 0],
    [{ batch: [{ type: 'purchase', userId: 'u' }] }, 'invalid_type', 0],
    [{ batch: [{ type: 'track', userId: 'u', event: 'E' }, { type: 'page' }] }, 'no_user_anon_id', 1],
    [{ batch: [{ type: 'track', userId: 'u', event: 'E', properties: 'nope' }] }, 'invalid_field', 0],
    [{ batch: [42] }, 'invalid_message', 0],
  ])('batch item errors: %j → %s', async (body, code, index) => {
    const { app } = await setup();
    const res = await post(app, '/v1/batch', body);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code, details: { index } });
  });

  it('refuses bodies that are not batches, and empty batches', async () => {
    const { app } = await setup();
    expect(await (await post(app, '/v1/batch', { events: [] })).json()).toMatchObject({ code: 'invalid_batch' });
    expect(await (await post(app, '/v1/batch', { batch: [] })).json()).toMatchObject({ code: 'empty_batch' });
  });
});

describe('ingest: SDK-specific shapes', () => {
  it('passes RudderStack\'s channel and rudderId, Segment\'s _metadata and the mobile context through unchanged, and drops a writeKey from the body', async () => {
    const { app, events } = await setup();
    const mobile = {
      app: { name: 'Demo', version: '2.3.0', build: '230', namespace: 'dev.orrery.demo' },
      device: { id: 'd-1', manufacturer: 'Google', model: 'Pixel 8', name: 'shiba', type: 'android', adTrackingEnabled: false },
      os: { name: 'Android', version: '14' },
      network: { wifi: true, bluetooth: false, cellular: false, carrier: 'T-Mobile' },
      screen: { density: 2.625, height: 2205, width: 1080 },
      library: { name: 'com.rudderstack.android.sdk.core', version: '1.20.0' },
      traits: { anonymousId: 'a-1' },
    };
    const metadata = { bundled: ['Segment.io'], unbundled: ['Mixpanel'], bundledIds: [] };
    const body = {
      writeKey: KEY,
      batch: [{ type: 'track', event: 'E', anonymousId: 'a-1', messageId: 'r1', channel: 'mobile', rudderId: 'rid-1', context: mobile, _metadata: metadata }],
    };
    expect((await post(app, '/v1/batch', body, { authorization: '' })).status).toBe(200);
    const [e] = events();
    expect(e!.envelope).toMatchObject({ channel: 'mobile', rudderId: 'rid-1', _metadata: metadata });
    expect(e!.envelope.context).toEqual({ ...mobile, ip: '203.0.113.7' });
    // The write key authenticates the call; it never travels on with the event.
    expect(JSON.stringify(e!.envelope)).not.toContain(KEY);
  });
});

describe('ingest: limits and bad input', () => {
  it('takes a path with a trailing slash as the path (Segment\'s Java library posts to /v1/import/)', async () => {
    const { app, events } = await setup();
    expect((await post(app, '/v1/import/', { batch: [{ type: 'track', userId: 'u1', event: 'E', messageId: 's1' }] })).status).toBe(200);
    expect((await post(app, '/v1/track/', { userId: 'u1', event: 'E', messageId: 's2' })).status).toBe(200);
    expect(events().map((e) => e.envelope.messageId)).toEqual(['s1', 's2']);
  });

  it('inflates a compressed body as a plain fetch handler (web streams only), whatever its content type says', async () => {
    const { app, events } = await setup();
    const gz = async (text: string, format: 'gzip' | 'deflate') => new Uint8Array(await new Response(new Blob([text]).stream().pipeThrough(new CompressionStream(format))).arrayBuffer());
    const batch = (id: string) => JSON.stringify({ batch: [{ type: 'track', userId: 'u1', event: 'Zipped', messageId: id }] });
    for (const [id, format, type] of [['g1', 'gzip', 'application/x-www-form-urlencoded'], ['d1', 'deflate', 'text/plain'], ['g2', 'gzip', '']] as const) {
      const res = await post(app, '/v1/batch', await gz(batch(id), format), { 'content-encoding': format, 'content-type': type });
      expect([id, res.status]).toEqual([id, 200]);
    }
    expect(events().map((e) => e.envelope.messageId)).toEqual(['g1', 'd1', 'g2']);
    const bad = await post(app, '/v1/batch', new Uint8Array([0x1f, 0x8b, 1, 2, 3]), { 'content-encoding': 'gzip' });
    expect([bad.status, ((await bad.json()) as { code: string }).code]).toEqual([400, 'invalid_compression']);
    const odd = await post(app, '/v1/batch', batch('x'), { 'content-encoding': 'compress' });
    expect([odd.status, ((await odd.json()) as { code: string }).code]).toEqual([415, 'unsupported_encoding']);
    // The limit holds for the inflated bytes: 40 kB of spaces gzip to well under 32 kB.
    const big = await gz(`{"userId":"u1","event":"E"${' '.repeat(40 * 1024)}}`, 'gzip');
    expect(big.byteLength).toBeLessThan(1024);
    const over = await post(app, '/v1/track', big, { 'content-encoding': 'gzip' });
    expect([over.status, ((await over.json()) as { code: string }).code]).toEqual([400, 'payload_too_large']);
  });

  it('invalid JSON is a 400 invalid_json', async () => {
    const { app } = await setup();
    const res = await post(app, '/v1/track', '{"userId": ');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ success: false, code: 'invalid_json' });
    expect(await (await post(app, '/v1/track', '')).json()).toMatchObject({ code: 'invalid_json' });
  });

  it('a body that is not valid UTF-8 is a 400 invalid_encoding, not passed on with U+FFFD in place of its bytes', async () => {
    const { app, events } = await setup();
    const prefix = new TextEncoder().encode('{"userId":"u","event":"caf');
    const bad = new Uint8Array([...prefix, 0xe9, ...new TextEncoder().encode('"}')]); // Latin-1 é: not UTF-8
    for (const path of ['/v1/track', '/v1/batch']) {
      const res = await post(app, path, path === '/v1/batch' ? new Uint8Array([...new TextEncoder().encode('{"batch":[{"type":"track",'), ...bad.slice(1)]) : bad);
      expect(res.status, path).toBe(400);
      expect(await res.json()).toMatchObject({ success: false, code: 'invalid_encoding' });
    }
    // A U+FFFD the client really sent (valid UTF-8) is kept.
    expect((await post(app, '/v1/track', { userId: 'u', event: 'caf\uFFFD' })).status).toBe(200);
    expect(events().at(-1)!.envelope.event).toBe('caf\uFFFD');
  });

  it('track without userId or anonymousId is no_user_anon_id, without event is missing_event', async () => {
    const { app } = await setup();
    expect(await (await post(app, '/v1/track', { event: 'E' })).json()).toMatchObject({ code: 'no_user_anon_id' });
    expect(await (await post(app, '/v1/track', { userId: 'u' })).json()).toMatchObject({ code: 'missing_event' });
  });

  it('a single call over 32 KB is refused with 400 payload_too_large', async () => {
    const { app, sent } = await setup();
    const res = await post(app, '/v1/track', { userId: 'u', event: 'E', properties: { blob: 'x'.repeat(33 * 1024) } });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'payload_too_large' });
    expect(sent).toHaveLength(0);
  });

  it('a batch over 500 KB is refused; an item over 32 KB inside a batch names its index', async () => {
    const { app } = await setup();
    const big = Array.from({ length: 20 }, () => ({ type: 'track', userId: 'u', event: 'E', properties: { blob: 'x'.repeat(30 * 1024) } }));
    const res = await post(app, '/v1/batch', { batch: big });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'payload_too_large' });
    const one = await post(app, '/v1/batch', {
      batch: [{ type: 'track', userId: 'u', event: 'E' }, { type: 'track', userId: 'u', event: 'E', properties: { blob: 'x'.repeat(40 * 1024) } }],
    });
    expect(await one.json()).toMatchObject({ code: 'event_too_large', details: { index: 1 } });
  });

  it('a declared Content-Length decides the size before the body is read; a lying one is still caught', async () => {
    const { app, sent } = await setup();
    const small = JSON.stringify({ userId: 'u', event: 'E' });
    const ok = await post(app, '/v1/track', small, { 'content-length': String(small.length) });
    expect(ok.status).toBe(200);
    const over = await post(app, '/v1/track', small, { 'content-length': String(32 * 1024 + 1) });
    expect(over.status).toBe(400);
    expect(await over.json()).toMatchObject({ code: 'payload_too_large' });
    const bogus = await post(app, '/v1/track', small, { 'content-length': 'lots' });
    expect(bogus.status).toBe(400);
    expect(await bogus.json()).toMatchObject({ code: 'invalid_content_length' });
    const big = JSON.stringify({ userId: 'u', event: 'E', properties: { blob: 'x'.repeat(33 * 1024) } });
    const lying = await post(app, '/v1/track', big, { 'content-length': '10' });
    expect(lying.status).toBe(400);
    expect(await lying.json()).toMatchObject({ code: 'payload_too_large' });
    const batchOver = await post(app, '/v1/batch', { batch: [{ type: 'track', userId: 'u', event: 'E' }] }, { 'content-length': String(500 * 1024 + 1) });
    expect(await batchOver.json()).toMatchObject({ code: 'payload_too_large' });
    expect(sent).toHaveLength(1);
  });

  it('more than 2,500 events in a batch is too_many_events', async () => {
    const { app } = await setup();
    const batch = Array.from({ length: 2_501 }, () => ({ type: 'page', userId: 'u' }));
    const res = await post(app, '/v1/batch', { batch });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'too_many_events' });
  });

  it('an unknown path is a JSON 404', async () => {
    const { app } = await setup();
    const res = await post(app, '/v1/purchase', {});
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: 'not_found' });
  });
});

describe('ingest: write keys', () => {
  it('takes the key from Basic auth or from writeKey in the body', async () => {
    const { app } = await setup();
    expect((await post(app, '/v1/track', { userId: 'u', event: 'E' })).status).toBe(200);
    const res = await post(app, '/v1/track', { userId: 'u', event: 'E', writeKey: KEY }, { authorization: '' });
    expect(res.status).toBe(200);
  });

  it('missing, unknown and disabled keys get 401 with a code', async () => {
    const { app } = await setup();
    expect(await (await post(app, '/v1/track', { userId: 'u', event: 'E' }, { authorization: '' })).json()).toMatchObject({ code: 'missing_write_key' });
    const unknown = await post(app, '/v1/track', { userId: 'u', event: 'E' }, { authorization: basic('wk_nope_123456') });
    expect(unknown.status).toBe(401);
    expect(await unknown.json()).toMatchObject({ code: 'invalid_write_key' });
    const disabled = await post(app, '/v1/track', { userId: 'u', event: 'E' }, { authorization: basic('wk_disabled_123') });
    expect(disabled.status).toBe(401);
    expect(await disabled.json()).toMatchObject({ code: 'source_disabled' });
    expect((await post(app, '/v1/track', {}, { authorization: 'Basic ###' })).status).toBe(401);
  });

  it('matches a source configured only by the hash of its key', async () => {
    const { app, events } = await setup();
    const res = await post(app, '/v1/track', { userId: 'u', event: 'E' }, { authorization: basic('wk_shop_12345'), origin: 'https://shop.example' });
    expect(res.status).toBe(200);
    expect(events()[0]!.envelope.sourceId).toBe('shop');
  });
});

describe('ingest: browsers', () => {
  it('accepts the text/plain batch analytics.js sends with the key in the body', async () => {
    const { app, events } = await setup();
    const res = await app.request('/v1/b', {
      method: 'POST',
      headers: { 'content-type': 'text/plain', origin: 'https://app.example' },
      body: JSON.stringify({ writeKey: KEY, batch: [{ type: 'page', anonymousId: 'anon-1', name: 'Home' }], sentAt: new Date(RECEIVED).toISOString() }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example');
    // README, CORS: credentials allowed (sendBeacon), and the retry headers readable by the page.
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    expect(res.headers.get('access-control-expose-headers')).toBe('Retry-After, X-RateLimit-Reset');
    expect(events()[0]!.envelope).toMatchObject({ type: 'page', anonymousId: 'anon-1', name: 'Home' });
  });

  it('answers a CORS preflight', async () => {
    const { app } = await setup();
    const res = await app.request('/v1/track', {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(res.headers.get('access-control-allow-headers')).toBe('content-type,authorization');
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
  });

  it("refuses an origin outside the source's allow-list with 403 and no CORS grant", async () => {
    const { app, sent } = await setup();
    const res = await post(app, '/v1/track', { userId: 'u', event: 'E' }, { authorization: basic('wk_shop_12345'), origin: 'https://evil.example' });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ code: 'origin_not_allowed' });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(sent).toHaveLength(0);
  });

  it('the pixel takes base64 JSON (URL-safe, unpadded too) and answers a GIF', async () => {
    const { app, events } = await setup();
    const json = JSON.stringify({ writeKey: KEY, userId: 'ü-1', event: 'Email Opened', properties: { campaign: 'nov?' } });
    const b64 = btoa(String.fromCharCode(...new TextEncoder().encode(json))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    const res = await app.request(`/v1/pixel/track?data=${b64}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/gif');
    const gif = new Uint8Array(await res.arrayBuffer());
    expect(String.fromCharCode(...gif.slice(0, 6))).toBe('GIF89a');
    expect(events()[0]!.envelope).toMatchObject({ type: 'track', userId: 'ü-1', event: 'Email Opened' });
  });

  it('the pixel refuses bad data with a 4xx code', async () => {
    const { app } = await setup();
    expect(await (await app.request('/v1/pixel/track')).json()).toMatchObject({ code: 'missing_data' });
    expect(await (await app.request('/v1/pixel/track?data=%%%')).json()).toMatchObject({ code: 'invalid_data' });
    expect(await (await app.request(`/v1/pixel/buy?data=${btoa('{}')}`)).json()).toMatchObject({ code: 'invalid_type' });
  });
});

describe('ingest: rate limits and hand-off failures', () => {
  it('over the source rate limit: 429 with Retry-After and X-RateLimit-Reset, counted in events', async () => {
    const { app, sent } = await setup({ limiter: createMemoryCache(), defaultRateLimit: { capacity: 3, refillPerSec: 0.5 } });
    expect((await post(app, '/v1/batch', { batch: [1, 2, 3].map(() => ({ type: 'page', userId: 'u' })) })).status).toBe(200);
    const res = await post(app, '/v1/track', { userId: 'u', event: 'E' });
    expect(res.status).toBe(429);
    expect(await res.json()).toMatchObject({ code: 'rate_limited' });
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(res.headers.get('x-ratelimit-reset')).toBe(res.headers.get('retry-after'));
    expect(sent).toHaveLength(1);
  });

  it('a source limit overrides the default', async () => {
    const { app } = await setup({
      limiter: createMemoryCache(),
      defaultRateLimit: { capacity: 1, refillPerSec: 0.001 },
      sources: [{ id: 'big', writeKeys: [KEY], writeKeyHashes: [], enabled: true, allowedOrigins: ['*'], rateLimit: { eventsPerSecond: 1000, burst: 1000 } }],
    });
    for (let i = 0; i < 5; i++) expect((await post(app, '/v1/track', { userId: 'u', event: 'E' })).status).toBe(200);
  });

  it('when the hand-off cannot make the events durable the client gets a 503 with Retry-After, never a 2xx', async () => {
    const { app } = await setup({
      handoff: {
        async send() {
          throw new OrreryError('SPOOL_FULL', 'spool full', { retriable: true, status: 503 });
        },
      },
    });
    const res = await post(app, '/v1/track', { userId: 'u', event: 'E' });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toMatchObject({ code: 'spool_full' });
  });

  it('an unexpected error is a JSON 500 without internals', async () => {
    const seen: unknown[] = [];
    const { app } = await setup({
      handoff: {
        async send() {
          throw new Error('secret internals');
        },
      },
      onUnexpectedError: (e) => seen.push(e),
    });
    const res = await post(app, '/v1/track', { userId: 'u', event: 'E' });
    expect(res.status).toBe(500);
    expect(JSON.stringify(await res.json())).not.toContain('secret');
    expect(seen).toHaveLength(1);
  });
});

describe('ingest: OpenAPI', () => {
  it('serves an OpenAPI 3.1 document generated from the schemas', async () => {
    const { app } = await setup();
    const doc = (await (await app.request('/openapi.json')).json()) as {
      openapi: string;
      paths: Record<string, unknown>;
      components: { schemas: Record<string, { properties?: Record<string, unknown>; required?: string[]; allOf?: Array<Record<string, unknown>> }> };
    };
    expect(doc.openapi).toBe('3.1.0');
    for (const p of ['/v1/track', '/v1/t', '/v1/batch', '/v1/import', '/v1/b', '/v1/pixel/{type}']) expect(doc.paths[p]).toBeDefined();
    const { Message, Batch, Track, Group, Alias } = doc.components.schemas;
    expect(Object.keys(Message!.properties!)).toEqual(expect.arrayContaining(['userId', 'anonymousId', 'event', 'properties']));
    expect(Batch!.allOf![0]).toMatchObject({ required: ['batch'] });
    // What validateMessage checks beyond the zod parse is stated too, per call type.
    expect(Batch!.allOf![1]).toMatchObject({ properties: { batch: { minItems: 1, maxItems: 2500 } } });
    expect(Track!.allOf![2]).toMatchObject({ required: ['event'] });
    expect(Group!.allOf![2]).toMatchObject({ required: ['groupId'] });
    expect(Alias!.allOf![2]).toMatchObject({ required: ['previousId'] });
    expect(Track!.allOf![1]).toMatchObject({ anyOf: [{ required: ['userId'] }, { required: ['anonymousId'] }] });
    expect((doc.paths['/v1/pixel/{type}'] as { get: { security: unknown[] } }).get.security).toEqual([]);
  });
});
