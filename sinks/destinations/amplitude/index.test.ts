import { HttpResponse } from 'msw';
import { describe, expect, it } from 'vitest';
import type { Envelope } from '../../../core/envelope.ts';
import { ctx, envelope, failure, NOW, vendorApi } from '../testkit.ts';
import amplitude, { type AmplitudeConfig } from './index.ts';

const US = 'https://api2.amplitude.com/2/httpapi';
const EU = 'https://api.eu.amplitude.com/2/httpapi';
const config: AmplitudeConfig = amplitude.configSchema.parse({ apiKey: 'amp-key' });

const vendor = vendorApi<{ api_key: string; events: Array<Record<string, unknown>>; options: unknown }>();
const seen = vendor.seen;
const accept = (url = US, answer: () => Response = () => HttpResponse.json({ code: 200 })) => vendor.accept(url, answer);

const TIME = Date.parse('2025-03-01T11:59:00.000Z');

describe('amplitude destination', () => {
  it('declares its type, name and the documented 2000-event request limit', () => {
    expect(amplitude.type).toBe('amplitude');
    expect(amplitude.displayName).toBe('Amplitude');
    expect(amplitude.maxBatchSize).toBe(2000);
  });

  it('validates its config: defaults, unknown keys refused', () => {
    expect(config).toEqual({ apiKey: 'amp-key', region: 'us', groupType: 'group' });
    expect(amplitude.configSchema.safeParse({ apiKey: '' }).success).toBe(false);
    expect(amplitude.configSchema.safeParse({ apiKey: 'k', region: 'apac' }).success).toBe(false);
    expect(amplitude.configSchema.safeParse({ apiKey: 'k', apikey: 'typo' }).success).toBe(false);
  });

  it('posts a track event in the HTTP V2 format, key in the body, JSON content type', async () => {
    accept();
    await amplitude.deliver(
      [
        envelope({
          type: 'track',
          event: 'Order Completed',
          properties: { orderId: 'o-1', revenue: 42.5, quantity: 2, product_id: 'p-9' },
          context: {
            ip: '203.0.113.9',
            locale: 'en-GB',
            library: { name: 'analytics.js', version: '5.2.0' },
            os: { name: 'iOS', version: '17.4' },
            device: { manufacturer: 'Apple', model: 'iPhone15,2', advertisingId: 'idfa-1' },
            network: { carrier: 'O2' },
            location: { country: 'United Kingdom', city: 'London', latitude: 51.5, longitude: -0.12 },
            app: { version: '3.1.0' },
            traits: { plan: 'pro' },
          },
          integrations: { Amplitude: { session_id: 1740830000000 } },
        }),
      ],
      config,
      ctx(),
    );
    expect(seen).toHaveLength(1);
    const [req] = seen;
    expect(req?.url.href).toBe(US);
    expect(req?.method).toBe('POST');
    expect(req?.headers.get('content-type')).toBe('application/json');
    expect(req?.headers.get('authorization')).toBeNull();
    expect(req?.body).toEqual({
      api_key: 'amp-key',
      options: { min_id_length: 1 },
      events: [
        {
          event_type: 'Order Completed',
          user_id: 'user-42',
          device_id: 'anon-7',
          time: TIME,
          insert_id: 'msg-0001',
          session_id: 1740830000000,
          event_properties: { orderId: 'o-1', revenue: 42.5, quantity: 2, product_id: 'p-9' },
          user_properties: { plan: 'pro' },
          revenue: 42.5,
          quantity: 2,
          productId: 'p-9',
          ip: '203.0.113.9',
          library: 'analytics.js/5.2.0',
          app_version: '3.1.0',
          os_name: 'iOS',
          os_version: '17.4',
          device_manufacturer: 'Apple',
          device_model: 'iPhone15,2',
          carrier: 'O2',
          country: 'United Kingdom',
          city: 'London',
          language: 'en-GB',
          location_lat: 51.5,
          location_lng: -0.12,
          idfa: 'idfa-1',
        },
      ],
    });
  });

  it('maps page, screen, identify and group calls, skips alias and empty identifies', async () => {
    accept();
    await amplitude.deliver(
      [
        envelope({ type: 'page', messageId: 'm-page', name: 'Pricing', properties: { path: '/pricing' } }),
        envelope({ type: 'page', messageId: 'm-page2' }),
        envelope({ type: 'screen', messageId: 'm-screen', name: 'Home' }),
        envelope({ type: 'identify', messageId: 'm-id', traits: { email: 'a@example.com' } }),
        envelope({ type: 'identify', messageId: 'm-id-empty' }),
        envelope({ type: 'group', messageId: 'm-group', groupId: 'acme', traits: { employees: 50 } }),
        envelope({ type: 'alias', messageId: 'm-alias', previousId: 'old' }),
      ],
      config,
      ctx(),
    );
    const ids = { user_id: 'user-42', device_id: 'anon-7', time: TIME };
    expect(seen[0]?.body.events).toEqual([
      { ...ids, event_type: 'Viewed Pricing Page', insert_id: 'm-page', event_properties: { path: '/pricing' } },
      { ...ids, event_type: 'Loaded a Page', insert_id: 'm-page2' },
      { ...ids, event_type: 'Viewed Home Screen', insert_id: 'm-screen' },
      { ...ids, event_type: '$identify', insert_id: 'm-id', user_properties: { $set: { email: 'a@example.com' } } },
      { ...ids, event_type: '$identify', insert_id: 'm-group', groups: { group: 'acme' }, user_properties: { $set: { group: 'acme' } } },
      { ...ids, event_type: '$groupidentify', insert_id: 'm-group:group', groups: { group: 'acme' }, group_properties: { $set: { employees: 50 } } },
    ]);
  });

  it('sends to the EU host when region is eu', async () => {
    accept(EU);
    await amplitude.deliver([envelope({ type: 'track', event: 'A' })], { ...config, region: 'eu' }, ctx());
    expect(seen.map((s) => s.url.href)).toEqual([EU]);
  });

  it('makes no request when nothing in the batch maps to an event', async () => {
    await amplitude.deliver([envelope({ type: 'alias', previousId: 'x' })], config, ctx());
    expect(seen).toEqual([]);
  });

  it('splits a batch over 2000 Amplitude events into several requests, in order', async () => {
    accept();
    // 1500 group calls with traits are 3000 Amplitude events.
    const batch = Array.from({ length: 1500 }, (_, i) =>
      envelope({ type: 'group', messageId: `m-${i}`, groupId: `g-${i}`, traits: { n: i } }),
    );
    await amplitude.deliver(batch, config, ctx());
    expect(seen.map((s) => s.body.events.length)).toEqual([2000, 1000]);
    expect(seen[0]?.body.events[0]?.['insert_id']).toBe('m-0');
    expect(seen[1]?.body.events.at(-1)?.['insert_id']).toBe('m-1499:group');
  });

  it('splits by size to stay under 1 MB a request', async () => {
    accept();
    const big = 'x'.repeat(400_000);
    const batch = [1, 2, 3].map((i) => envelope({ type: 'track', event: 'Big', messageId: `m-${i}`, properties: { big } }));
    await amplitude.deliver(batch, config, ctx());
    expect(seen.map((s) => s.body.events.map((e) => e['insert_id']))).toEqual([['m-1', 'm-2'], ['m-3']]);
  });

  it('refuses, without sending, an event that alone passes 1 MB', async () => {
    const err = await failure(
      amplitude.deliver([envelope({ type: 'track', event: 'Huge', properties: { big: 'x'.repeat(1_100_000) } })], config, ctx()),
    );
    expect(err.retriable).toBe(false);
    expect(seen).toEqual([]);
  });

  it('stops at the first failed request', async () => {
    let calls = 0;
    accept(US, () => (++calls === 1 ? HttpResponse.json({ code: 200 }) : HttpResponse.text('down', { status: 503 })));
    const batch = Array.from({ length: 1500 }, (_, i) => envelope({ type: 'group', messageId: `m-${i}`, groupId: 'g', traits: { n: i } }));
    const err = await failure(amplitude.deliver(batch, config, ctx()));
    expect(err.retriable).toBe(true);
    expect(seen).toHaveLength(2);
  });

  it('429 with Retry-After is retriable after that delay', async () => {
    accept(US, () => HttpResponse.json({ code: 429, error: 'Too many requests for some devices and users' }, { status: 429, headers: { 'retry-after': '5' } }));
    const err = await failure(amplitude.deliver([envelope({ type: 'track', event: 'A' })], config, ctx()));
    expect(err).toMatchObject({ retriable: true, httpStatus: 429, retryAfterMs: 5000 });
  });

  it('429 without Retry-After waits the 30 s Amplitude asks for', async () => {
    accept(US, () => HttpResponse.json({ code: 429, throttled_devices: { 'anon-7': 31 } }, { status: 429 }));
    const err = await failure(amplitude.deliver([envelope({ type: 'track', event: 'A' })], config, ctx()));
    expect(err).toMatchObject({ retriable: true, httpStatus: 429, retryAfterMs: 30_000 });
    expect(err.bodyExcerpt).toContain('throttled_devices');
  });

  it('400 is final and keeps the body excerpt', async () => {
    const body = { code: 400, error: 'Invalid field values on some events', events_with_invalid_fields: { time: [0] } };
    accept(US, () => HttpResponse.json(body, { status: 400 }));
    const err = await failure(amplitude.deliver([envelope({ type: 'track', event: 'A' })], config, ctx()));
    expect(err).toMatchObject({ retriable: false, httpStatus: 400 });
    expect(err.bodyExcerpt).toContain('events_with_invalid_fields');
  });

  it('413 is final', async () => {
    accept(US, () => HttpResponse.json({ code: 413, error: 'Payload too large' }, { status: 413 }));
    const err = await failure(amplitude.deliver([envelope({ type: 'track', event: 'A' })], config, ctx()));
    expect(err).toMatchObject({ retriable: false, httpStatus: 413 });
  });

  it('5xx is retriable', async () => {
    accept(US, () => HttpResponse.text('bad gateway', { status: 502 }));
    const err = await failure(amplitude.deliver([envelope({ type: 'track', event: 'A' })], config, ctx()));
    expect(err).toMatchObject({ retriable: true, httpStatus: 502, bodyExcerpt: 'bad gateway' });
  });

  it('a network error is retriable', async () => {
    vendor.accept(US, () => HttpResponse.error());
    const err = await failure(amplitude.deliver([envelope({ type: 'track', event: 'A' })], config, ctx()));
    expect(err.retriable).toBe(true);
    expect(err.httpStatus).toBeUndefined();
  });
});
