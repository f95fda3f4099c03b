import { HttpResponse } from 'msw';
import { describe, expect, it } from 'vitest';
import type { Envelope } from '../../../core/envelope.ts';
import { ctx, envelope, failure, NOW, vendorApi } from '../testkit.ts';
import ga4, { ga4Name, type Ga4Config, type Ga4Request } from './index.ts';

const ENDPOINT = 'https://www.google-analytics.com/mp/collect';
const MICROS = Date.parse('2025-03-01T11:59:00.000Z') * 1000;
const config: Ga4Config = ga4.configSchema.parse({ measurementId: 'G-ABC123XYZ9', apiSecret: 'mp-secret' });

const vendor = vendorApi<Ga4Request>();
const seen = vendor.seen;
// The Measurement Protocol answers 204 No Content, malformed events included.
const accept = (answer: () => Response = () => new HttpResponse(null, { status: 204 })) => vendor.accept(ENDPOINT, answer);

const track = (over: Partial<Envelope> = {}) => envelope({ type: 'track', event: 'Signed Up', ...over });

describe('ga4 event names', () => {
  it('turns Segment names into GA4 ones: [a-z0-9_], a letter first, at most 40 characters', () => {
    expect(ga4Name('Order Completed')).toBe('order_completed');
    expect(ga4Name('  Signed-Up!! ')).toBe('signed_up');
    expect(ga4Name('2FA Enabled')).toBe('e_2fa_enabled');
    expect(ga4Name('Café Visité')).toBe('cafe_visite');
    expect(ga4Name('_private')).toBe('private');
    expect(ga4Name('!!!')).toBeUndefined();
    const long = ga4Name('A Very Long Event Name That Goes Well Past The Limit');
    expect(long).toBe('a_very_long_event_name_that_goes_well_pa');
    expect(long?.length).toBeLessThanOrEqual(40);
    expect(ga4Name('abcdefghij abcdefghij abcdefghij abcdefg xyz')).toBe('abcdefghij_abcdefghij_abcdefghij_abcdefg');
  });
});

describe('ga4 destination', () => {
  it('declares its type, name and the documented 25-event request limit', () => {
    expect(ga4.type).toBe('ga4');
    expect(ga4.displayName).toBe('Google Analytics 4');
    expect(ga4.maxBatchSize).toBe(25);
  });

  it('validates its config', () => {
    expect(config).toEqual({ measurementId: 'G-ABC123XYZ9', apiSecret: 'mp-secret' });
    expect(ga4.configSchema.safeParse({ measurementId: 'UA-1234-1', apiSecret: 's' }).success).toBe(false);
    expect(ga4.configSchema.safeParse({ measurementId: 'G-ABC', apiSecret: '' }).success).toBe(false);
    expect(ga4.configSchema.safeParse({ measurementId: 'G-ABC', apiSecret: 's', region: 'eu' }).success).toBe(false);
  });

  it('posts a track event to /mp/collect with measurement_id and api_secret, params within limits', async () => {
    accept();
    await ga4.deliver(
      [
        track({
          event: 'Order Completed',
          properties: {
            order_id: 'o-1',
            'Total Value': 42.5,
            first_order: true,
            coupon: 'c'.repeat(150),
            address: { city: 'London' },
            tags: ['a', 'b'],
            nothing: null,
            items: [{ item_id: 'sku-1', price: 10, quantity: 2, extra: { nested: true } }, 'not an item'],
          },
        }),
      ],
      config,
      ctx(),
    );
    expect(seen).toHaveLength(1);
    const [req] = seen;
    expect(req?.method).toBe('POST');
    expect(req?.url.origin + req!.url.pathname).toBe(ENDPOINT);
    expect(Object.fromEntries(req!.url.searchParams)).toEqual({ measurement_id: 'G-ABC123XYZ9', api_secret: 'mp-secret' });
    expect(req?.headers.get('content-type')).toBe('application/json');
    expect(req?.body).toEqual({
      client_id: 'anon-7',
      user_id: 'user-42',
      timestamp_micros: MICROS,
      events: [
        {
          name: 'order_completed',
          timestamp_micros: MICROS,
          params: {
            order_id: 'o-1',
            total_value: 42.5,
            first_order: 'true',
            coupon: 'c'.repeat(100),
            items: [{ item_id: 'sku-1', price: 10, quantity: 2 }],
          },
        },
      ],
    });
  });

  it('maps page to page_view with the page params first and their longer limits', async () => {
    accept();
    const url = `https://shop.example/${'p'.repeat(300)}`;
    await ga4.deliver(
      [
        envelope({
          type: 'page',
          name: 'Pricing',
          properties: { plan: 'pro' },
          context: { page: { url, title: 'Pricing — Shop', referrer: 'https://search.example/' } },
        }),
      ],
      config,
      ctx(),
    );
    expect(seen[0]?.body.events).toEqual([
      {
        name: 'page_view',
        timestamp_micros: MICROS,
        params: { page_location: url, page_title: 'Pricing — Shop', page_referrer: 'https://search.example/', plan: 'pro' },
      },
    ]);
  });

  it('keeps the first 25 params of an event', async () => {
    accept();
    const properties = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`p${i}`, i]));
    await ga4.deliver([track({ properties })], config, ctx());
    const params = seen[0]?.body.events[0]?.params ?? {};
    expect(Object.keys(params)).toEqual(Array.from({ length: 25 }, (_, i) => `p${i}`));
  });

  it('sends nothing for screen, identify, group, alias, or a name with no usable character', async () => {
    await ga4.deliver(
      [
        envelope({ type: 'screen', name: 'Home' }),
        envelope({ type: 'identify', traits: { a: 1 } }),
        envelope({ type: 'group', groupId: 'g' }),
        envelope({ type: 'alias', previousId: 'p' }),
        track({ event: '!!!' }),
      ],
      config,
      ctx(),
    );
    expect(seen).toEqual([]);
  });

  it('sends one request per client, in the order clients first appear, each client in its order', async () => {
    accept();
    await ga4.deliver(
      [
        track({ messageId: 'a1', anonymousId: 'client-a', userId: 'ua', event: 'A1' }),
        track({ messageId: 'b1', anonymousId: 'client-b', userId: undefined, event: 'B1' }),
        track({ messageId: 'a2', anonymousId: 'client-a', userId: 'ua', event: 'A2' }),
        track({ messageId: 'c1', anonymousId: undefined, userId: 'only-user', event: 'C1' }),
        track({ messageId: 'b2', anonymousId: 'client-b', userId: undefined, event: 'B2' }),
        track({ messageId: 'd1', anonymousId: 'client-d', integrations: { 'Google Analytics 4': { clientId: '123.456' } }, event: 'D1' }),
      ],
      config,
      ctx(),
    );
    expect(seen.map((s) => [s.body.client_id, s.body.user_id, s.body.events.map((e) => e.name)])).toEqual([
      ['client-a', 'ua', ['a1', 'a2']],
      ['client-b', undefined, ['b1', 'b2']],
      ['only-user', 'only-user', ['c1']],
      ['123.456', 'user-42', ['d1']],
    ]);
  });

  it('starts a new request when a client identifies mid-batch, keeping its order', async () => {
    accept();
    await ga4.deliver(
      [
        track({ anonymousId: 'x', userId: undefined, event: 'Before' }),
        track({ anonymousId: 'x', userId: 'u', event: 'Login' }),
        track({ anonymousId: 'x', userId: 'u', event: 'After' }),
      ],
      config,
      ctx(),
    );
    expect(seen.map((s) => [s.body.user_id, s.body.events.map((e) => e.name)])).toEqual([
      [undefined, ['before']],
      ['u', ['login', 'after']],
    ]);
  });

  it('splits one client past 25 events into several requests, in order', async () => {
    accept();
    const batch = Array.from({ length: 30 }, (_, i) => track({ event: `Step ${i}` }));
    await ga4.deliver(batch, config, ctx());
    expect(seen.map((s) => s.body.events.length)).toEqual([25, 5]);
    expect(seen[1]?.body.events[0]?.name).toBe('step_25');
    expect(seen[1]?.body.timestamp_micros).toBe(MICROS);
  });

  it('splits a request that would pass 130 kB, and refuses an event that alone does', async () => {
    accept();
    const items = (n: number) => Array.from({ length: n }, (_, i) => ({ item_id: `sku-${i}`, item_name: 'n'.repeat(100) }));
    await ga4.deliver([1, 2, 3].map((i) => track({ event: `Big ${i}`, properties: { items: items(400) } })), config, ctx());
    expect(seen.map((s) => s.body.events.map((e) => e.name))).toEqual([['big_1', 'big_2'], ['big_3']]);
    for (const s of seen) expect(JSON.stringify(s.body).length).toBeLessThanOrEqual(130_000);

    const err = await failure(ga4.deliver([track({ properties: { items: items(1200) } })], config, ctx()));
    expect(err.retriable).toBe(false);
    expect(seen).toHaveLength(2);
  });

  it('429 with Retry-After is retriable after that delay', async () => {
    accept(() => new HttpResponse('quota', { status: 429, headers: { 'retry-after': '7' } }));
    const err = await failure(ga4.deliver([track()], config, ctx()));
    expect(err).toMatchObject({ retriable: true, httpStatus: 429, retryAfterMs: 7000 });
  });

  it('400 is final and keeps the body excerpt', async () => {
    accept(() => HttpResponse.text('Invalid measurement_id', { status: 400 }));
    const err = await failure(ga4.deliver([track()], config, ctx()));
    expect(err).toMatchObject({ retriable: false, httpStatus: 400, bodyExcerpt: 'Invalid measurement_id' });
  });

  it('5xx is retriable', async () => {
    accept(() => HttpResponse.text('oops', { status: 500 }));
    const err = await failure(ga4.deliver([track()], config, ctx()));
    expect(err).toMatchObject({ retriable: true, httpStatus: 500 });
  });

  it('a network error is retriable', async () => {
    vendor.accept(ENDPOINT, () => HttpResponse.error());
    const err = await failure(ga4.deliver([track()], config, ctx()));
    expect(err.retriable).toBe(true);
  });
});
