import { HttpResponse } from 'msw';
import { describe, expect, it } from 'vitest';
import type { Envelope } from '../../../core/envelope.ts';
import { ctx, envelope, failure, NOW, vendorApi } from '../testkit.ts';
import mixpanel, { insertId, type MixpanelConfig } from './index.ts';

const US = 'https://api.mixpanel.com/import';
const TIME = Date.parse('2025-03-01T11:59:00.000Z');
const config: MixpanelConfig = mixpanel.configSchema.parse({ projectId: 3141592, username: 'orrery.sa', secret: 's3cr3t' });
const BASIC = `Basic ${Buffer.from('orrery.sa:s3cr3t').toString('base64')}`;

const vendor = vendorApi<Array<{ event: string; properties: Record<string, unknown> }>>();
const seen = vendor.seen;
const accept = (url = US, answer: () => Response = () => HttpResponse.json({ code: 200, num_records_imported: 1, status: 'OK' })) => vendor.accept(url, answer);

describe('mixpanel destination', () => {
  it('declares its type, name and the documented 2000-event request limit', () => {
    expect(mixpanel.type).toBe('mixpanel');
    expect(mixpanel.displayName).toBe('Mixpanel');
    expect(mixpanel.maxBatchSize).toBe(2000);
  });

  it('validates its config: a numeric project id (string or number), service account, region', () => {
    expect(config).toEqual({ projectId: '3141592', username: 'orrery.sa', secret: 's3cr3t', region: 'us' });
    const ok = { projectId: '1', username: 'u', secret: 's' };
    expect(mixpanel.configSchema.safeParse(ok).success).toBe(true);
    expect(mixpanel.configSchema.safeParse({ ...ok, projectId: 'abc' }).success).toBe(false);
    expect(mixpanel.configSchema.safeParse({ ...ok, secret: '' }).success).toBe(false);
    expect(mixpanel.configSchema.safeParse({ ...ok, region: 'apac' }).success).toBe(false);
    expect(mixpanel.configSchema.safeParse({ ...ok, token: 'x' }).success).toBe(false);
  });

  it('posts a track event to /import with strict=1, the project id and Basic service account auth', async () => {
    accept();
    await mixpanel.deliver(
      [
        envelope({
          type: 'track',
          event: 'Order Completed',
          properties: { orderId: 'o-1', total: 42.5, time: 'not ours', distinct_id: 'not ours either' },
          context: {
            ip: '203.0.113.9',
            page: { url: 'https://shop.example/checkout', referrer: 'https://search.example/' },
            os: { name: 'Mac OS X' },
            screen: { width: 1440, height: 900 },
            campaign: { source: 'newsletter', medium: 'email', name: 'spring' },
          },
        }),
      ],
      config,
      ctx(),
    );
    expect(seen).toHaveLength(1);
    const [req] = seen;
    expect(req?.method).toBe('POST');
    expect(req?.url.origin + req!.url.pathname).toBe(US);
    expect(Object.fromEntries(req!.url.searchParams)).toEqual({ strict: '1', project_id: '3141592' });
    expect(req?.headers.get('authorization')).toBe(BASIC);
    expect(req?.headers.get('content-type')).toBe('application/json');
    expect(req?.body).toEqual([
      {
        event: 'Order Completed',
        properties: {
          orderId: 'o-1',
          total: 42.5,
          time: TIME,
          distinct_id: 'user-42',
          $insert_id: 'msg-0001',
          $user_id: 'user-42',
          $device_id: 'anon-7',
          ip: '203.0.113.9',
          $current_url: 'https://shop.example/checkout',
          $referrer: 'https://search.example/',
          $os: 'Mac OS X',
          $screen_width: 1440,
          $screen_height: 900,
          utm_source: 'newsletter',
          utm_medium: 'email',
          utm_campaign: 'spring',
        },
      },
    ]);
  });

  it('maps page, screen and identify; anonymous events get a $device: distinct_id; skips group and alias', async () => {
    accept();
    await mixpanel.deliver(
      [
        envelope({ type: 'page', messageId: 'm-page', name: 'Pricing', userId: undefined, properties: { path: '/pricing' } }),
        envelope({ type: 'page', messageId: 'm-page2', userId: undefined }),
        envelope({ type: 'screen', messageId: 'm-screen', name: 'Home' }),
        envelope({ type: 'identify', messageId: 'm-id', traits: { email: 'a@example.com' } }),
        envelope({ type: 'identify', messageId: 'm-id-known', anonymousId: undefined }),
        envelope({ type: 'group', messageId: 'm-group', groupId: 'acme' }),
        envelope({ type: 'alias', messageId: 'm-alias', previousId: 'old' }),
      ],
      config,
      ctx(),
    );
    const anon = { time: TIME, distinct_id: '$device:anon-7', $device_id: 'anon-7' };
    const known = { time: TIME, distinct_id: 'user-42', $user_id: 'user-42', $device_id: 'anon-7' };
    expect(seen[0]?.body).toEqual([
      { event: 'Viewed Pricing Page', properties: { ...anon, $insert_id: 'm-page', name: 'Pricing', path: '/pricing' } },
      { event: 'Loaded a Page', properties: { ...anon, $insert_id: 'm-page2' } },
      { event: 'Viewed Home Screen', properties: { ...known, $insert_id: 'm-screen', name: 'Home' } },
      { event: '$identify', properties: { ...known, $insert_id: 'm-id', $identified_id: 'user-42', $anon_id: '$device:anon-7' } },
    ]);
  });

  it('derives a valid, stable $insert_id from a messageId Mixpanel would refuse', async () => {
    accept();
    const long = `ajs-next-${'9'.repeat(40)}`;
    await mixpanel.deliver(
      [envelope({ type: 'track', event: 'A', messageId: long }), envelope({ type: 'track', event: 'B', messageId: 'has spaces & symbols' })],
      config,
      ctx(),
    );
    const ids = seen[0]!.body.map((e) => e.properties['$insert_id']);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9-]{1,36}$/);
    expect(ids[0]).toBe(insertId(long));
    expect(ids[0]).not.toBe(ids[1]);
    expect(insertId('550e8400-e29b-41d4-a716-446655440000')).toBe('550e8400-e29b-41d4-a716-446655440000');
  });

  it('uses the EU and India residency hosts', async () => {
    accept('https://api-eu.mixpanel.com/import');
    accept('https://api-in.mixpanel.com/import');
    await mixpanel.deliver([envelope({ type: 'track', event: 'A' })], { ...config, region: 'eu' }, ctx());
    await mixpanel.deliver([envelope({ type: 'track', event: 'A' })], { ...config, region: 'in' }, ctx());
    expect(seen.map((s) => s.url.host)).toEqual(['api-eu.mixpanel.com', 'api-in.mixpanel.com']);
  });

  it('splits a batch over 2000 events into several requests, in order', async () => {
    accept();
    const batch = Array.from({ length: 2500 }, (_, i) => envelope({ type: 'track', event: 'A', messageId: `m-${i}` }));
    await mixpanel.deliver(batch, config, ctx());
    expect(seen.map((s) => s.body.length)).toEqual([2000, 500]);
    expect(seen[1]?.body[0]?.properties['$insert_id']).toBe('m-2000');
  });

  it('splits by size to stay under 2 MB a request', async () => {
    accept();
    const big = 'x'.repeat(800_000);
    const batch = [1, 2, 3].map((i) => envelope({ type: 'track', event: 'Big', messageId: `m-${i}`, properties: { big } }));
    await mixpanel.deliver(batch, config, ctx());
    expect(seen.map((s) => s.body.map((e) => e.properties['$insert_id']))).toEqual([['m-1', 'm-2'], ['m-3']]);
  });

  it('429 with Retry-After is retriable after that delay', async () => {
    accept(US, () => HttpResponse.json({ code: 429, error: 'rate limited', status: 'Too Many Requests' }, { status: 429, headers: { 'retry-after': '12' } }));
    const err = await failure(mixpanel.deliver([envelope({ type: 'track', event: 'A' })], config, ctx()));
    expect(err).toMatchObject({ retriable: true, httpStatus: 429, retryAfterMs: 12_000 });
  });

  it('400 (strict validation) is final and keeps failed_records in the excerpt', async () => {
    const body = {
      code: 400,
      num_records_imported: 0,
      status: 'Bad Request',
      failed_records: [{ index: 0, $insert_id: 'msg-0001', field: 'properties.time', message: "'properties.time' is invalid" }],
    };
    accept(US, () => HttpResponse.json(body, { status: 400 }));
    const err = await failure(mixpanel.deliver([envelope({ type: 'track', event: 'A' })], config, ctx()));
    expect(err).toMatchObject({ retriable: false, httpStatus: 400 });
    expect(err.bodyExcerpt).toContain('failed_records');
  });

  it('401 (bad service account) is final', async () => {
    accept(US, () => HttpResponse.json({ error: 'Invalid credentials', status: 0 }, { status: 401 }));
    const err = await failure(mixpanel.deliver([envelope({ type: 'track', event: 'A' })], config, ctx()));
    expect(err).toMatchObject({ retriable: false, httpStatus: 401 });
  });

  it('5xx is retriable', async () => {
    accept(US, () => HttpResponse.text('unavailable', { status: 503 }));
    const err = await failure(mixpanel.deliver([envelope({ type: 'track', event: 'A' })], config, ctx()));
    expect(err).toMatchObject({ retriable: true, httpStatus: 503 });
  });

  it('a network error is retriable', async () => {
    vendor.accept(US, () => HttpResponse.error());
    const err = await failure(mixpanel.deliver([envelope({ type: 'track', event: 'A' })], config, ctx()));
    expect(err.retriable).toBe(true);
  });
});
