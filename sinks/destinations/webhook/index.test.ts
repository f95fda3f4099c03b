import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Envelope } from '../../../core/envelope.ts';
import { isPublicAddress } from '../../ssrf.ts';
import { DeliveryError } from '../types.ts';
import webhook, { signStandardWebhook } from './index.ts';

/** A real HTTP receiver on loopback: it records requests and answers what the test says. */
let server: Server;
let url: string;
const received: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
let answer: { status: number; headers?: Record<string, string>; body?: string } = { status: 200 };

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(answer.status, answer.headers ?? {});
      res.end(answer.body ?? '');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/collect`;
});
afterAll(() => server.close());

const SECRET = `whsec_${Buffer.from('0123456789abcdef0123456789abcdef').toString('base64')}`;
const NOW = Date.parse('2026-11-27T12:00:00Z');
const ctx = { fetch: globalThis.fetch, now: () => NOW, signal: new AbortController().signal };

function ev(n: number): Envelope {
  return {
    v: 1,
    sourceId: 'web',
    type: 'track',
    event: 'Order Completed',
    userId: 'u1',
    messageId: `m${n}`,
    properties: { n },
    timestamp: '2026-11-27T11:59:00.000Z',
    receivedAt: '2026-11-27T11:59:01.000Z',
    routing: { configVersion: 3, destinationId: 'hook', routedAt: '2026-11-27T11:59:02.000Z' },
  } as Envelope;
}

const config = (over: object = {}) => webhook.configSchema.parse({ url, allowPrivateNetwork: true, ...over });

describe('webhook destination', () => {
  it('posts each event as JSON, without Orrery internals', async () => {
    received.length = 0;
    answer = { status: 200 };
    await webhook.deliver([ev(1), ev(2)], config(), ctx);
    expect(received).toHaveLength(2);
    const body = JSON.parse(received[0]!.body);
    expect(body).toMatchObject({ type: 'track', event: 'Order Completed', messageId: 'm1', userId: 'u1', sourceId: 'web' });
    expect(body.v).toBeUndefined();
    expect(body.routing).toBeUndefined();
    expect(received[0]!.headers['content-type']).toBe('application/json');
    expect(received[0]!.headers['webhook-signature']).toBeUndefined();
  });

  it('signs Standard Webhooks style, verifiable by the receiver', async () => {
    received.length = 0;
    await webhook.deliver([ev(3)], config({ secret: SECRET, headers: { 'x-team': 'growth' } }), ctx);
    const { headers, body } = received[0]!;
    expect(headers['webhook-id']).toBe('m3');
    expect(headers['webhook-timestamp']).toBe(String(NOW / 1000));
    expect(headers['x-team']).toBe('growth');
    // Verify the way a receiver would, from the spec, not with our signing function.
    const key = Buffer.from(SECRET.slice(6), 'base64');
    const expected = createHmac('sha256', key).update(`m3.${NOW / 1000}.${body}`).digest('base64');
    expect(headers['webhook-signature']).toBe(`v1,${expected}`);
    expect(signStandardWebhook(SECRET, 'm3', NOW / 1000, body)).toBe(`v1,${expected}`);
  });

  it('batch mode posts one JSON array', async () => {
    received.length = 0;
    await webhook.deliver([ev(4), ev(5), ev(6)], config({ batch: true, secret: SECRET }), ctx);
    expect(received).toHaveLength(1);
    expect(JSON.parse(received[0]!.body).map((e: { messageId: string }) => e.messageId)).toEqual(['m4', 'm5', 'm6']);
    expect(received[0]!.headers['webhook-id']).toBe('m4+2');
  });

  it('5xx and 429 are retriable (with Retry-After), other 4xx are not', async () => {
    answer = { status: 503, body: 'down for maintenance' };
    const e503 = await webhook.deliver([ev(7)], config(), ctx).catch((e: unknown) => e);
    expect(e503).toBeInstanceOf(DeliveryError);
    expect(e503).toMatchObject({ retriable: true, httpStatus: 503, bodyExcerpt: 'down for maintenance' });
    answer = { status: 429, headers: { 'retry-after': '7' } };
    expect(await webhook.deliver([ev(7)], config(), ctx).catch((e: unknown) => e)).toMatchObject({ retriable: true, retryAfterMs: 7000 });
    answer = { status: 422, body: '{"error":"bad"}' };
    expect(await webhook.deliver([ev(7)], config(), ctx).catch((e: unknown) => e)).toMatchObject({ retriable: false, httpStatus: 422 });
    answer = { status: 200 };
  });

  it('a receiver that is not listening is a retriable failure', async () => {
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as { port: number }).port;
    closed.close();
    await once(closed, 'close');
    const err = await webhook.deliver([ev(8)], config({ url: `http://127.0.0.1:${port}/` }), ctx).catch((e: unknown) => e);
    expect(err).toMatchObject({ retriable: true });
  });

  /** Runs `fn` with the URL of a receiver that accepts connections and never answers. */
  async function withSilentReceiver(fn: (silentUrl: string) => Promise<void>): Promise<void> {
    const silent = createServer(() => {});
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    try {
      await fn(`http://127.0.0.1:${(silent.address() as { port: number }).port}/`);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  }

  it('gives up on a receiver that does not answer within timeoutMs: a retriable failure', () =>
    withSilentReceiver(async (silentUrl) => {
      // Without the limit undici would wait 300 s for headers: the test's own timeout ends it.
      const err = await webhook.deliver([ev(1)], config({ url: silentUrl, timeoutMs: 300 }), ctx).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DeliveryError);
      expect((err as DeliveryError).retriable).toBe(true);
      expect((err as Error).message).toMatch(/unreachable.*timeout/i);
    }));

  it('stops waiting when the worker shuts down (its signal aborts)', () =>
    withSilentReceiver(async (silentUrl) => {
      const stop = new AbortController();
      const pending = webhook.deliver([ev(1)], config({ url: silentUrl }), { ...ctx, signal: stop.signal }).catch((e: unknown) => e);
      setTimeout(() => stop.abort(), 100);
      const err = await pending;
      expect(err).toBeInstanceOf(DeliveryError);
      expect((err as DeliveryError).retriable).toBe(true);
    }));

  it('refuses private addresses unless allowPrivateNetwork is set, by IP and by name', async () => {
    received.length = 0;
    // The schema refuses a literal private URL up front (below); the delivery checks again.
    const unchecked = (over: object) => ({ ...config(), allowPrivateNetwork: false, ...over });
    const byIp = await webhook.deliver([ev(9)], unchecked({}), ctx).catch((e: unknown) => e);
    expect(byIp).toMatchObject({ retriable: false });
    expect(String((byIp as Error).message)).toMatch(/127.0.0.1 is a private or reserved address/);
    const byName = await webhook
      .deliver([ev(9)], config({ allowPrivateNetwork: false, url: url.replace('127.0.0.1', 'localhost') }), ctx)
      .catch((e: unknown) => e);
    expect(byName).toMatchObject({ retriable: false });
    expect(String((byName as Error).message)).toMatch(/localhost resolves to .* a private or reserved address/);
    const mapped = await webhook
      .deliver([ev(9)], unchecked({ url: url.replace('127.0.0.1', '[::ffff:127.0.0.1]') }), ctx)
      .catch((e: unknown) => e);
    expect(mapped).toMatchObject({ retriable: false });
    expect(received).toHaveLength(0);
  });

  it('classifies addresses', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '0.0.0.0']) {
      expect(isPublicAddress(a), a).toBe(false);
    }
    for (const a of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111']) expect(isPublicAddress(a), a).toBe(true);
    expect(isPublicAddress('not-an-ip')).toBe(false);
  });

  it('judges an IPv6 address that embeds an IPv4 one by the IPv4 address, and refuses the reserved ranges', () => {
    // As WHATWG URL parsing writes them: [::127.0.0.1] becomes [::7f00:1].
    const host = (u: string) => new URL(u).hostname.replace(/^\[|\]$/g, '');
    const refused = [
      host('http://[::127.0.0.1]:1/'), // IPv4-compatible
      '::127.0.0.1',
      '::10.0.0.1',
      '::ffff:0:127.0.0.1', // IPv4-translated
      '64:ff9b::127.0.0.1', // NAT64
      '64:ff9b::a00:1',
      '64:ff9b:1::c0a8:101', // NAT64, local use
      '2002:7f00:1::1', // 6to4 of 127.0.0.1
      '2002:c0a8:101::', // 6to4 of 192.168.1.1
      '2001:0:4136:e378:8000:63bf:3fff:fdd2', // Teredo (client 192.0.2.45)
      '::',
      '0.1.2.3',
      '224.0.0.1',
      '255.255.255.255',
      '192.0.2.1',
      '198.51.100.7',
      '203.0.113.9',
      'ff02::1',
      '2001:db8::1',
      '100::1',
      'fec0::1',
    ];
    for (const a of refused) expect(isPublicAddress(a), a).toBe(false);
    for (const a of ['64:ff9b::8.8.8.8', '2002:808:808::1', '::ffff:8.8.8.8']) expect(isPublicAddress(a), a).toBe(true);
  });

  it('refuses a literal private URL when the destination is created, unless allowPrivateNetwork is set', () => {
    for (const u of ['http://127.0.0.1:9/hook', 'http://[::127.0.0.1]:1/', 'http://[64:ff9b::a00:1]/', 'http://10.0.0.8/x']) {
      const parsed = webhook.configSchema.safeParse({ url: u });
      expect(parsed.success, u).toBe(false);
      expect(parsed.error?.issues[0]).toMatchObject({ path: ['url'], message: expect.stringMatching(/private or reserved address: set allowPrivateNetwork: true/) });
      expect(webhook.configSchema.safeParse({ url: u, allowPrivateNetwork: true }).success, u).toBe(true);
    }
    // Names are checked when connecting (DNS can change); public literals pass.
    expect(webhook.configSchema.safeParse({ url: 'http://localhost:9/hook' }).success).toBe(true);
    expect(webhook.configSchema.safeParse({ url: 'https://8.8.8.8/hook' }).success).toBe(true);
  });

  it('validates its config', () => {
    expect(webhook.configSchema.safeParse({ url: 'ftp://x' }).success).toBe(false);
    expect(webhook.configSchema.safeParse({ url, secret: 'plain' }).success).toBe(false);
  });
});
