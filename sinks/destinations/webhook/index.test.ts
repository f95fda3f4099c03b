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
    const byIp = await webhook.deliver([ev(9)], config({ allowPrivateNetwork: false }), ctx).catch((e: unknown) => e);
    expect(byIp).toMatchObject({ retriable: false });
    expect(String((byIp as Error).message)).toMatch(/private address/);
    const byName = await webhook
      .deliver([ev(9)], config({ allowPrivateNetwork: false, url: url.replace('127.0.0.1', 'localhost') }), ctx)
      .catch((e: unknown) => e);
    expect(byName).toMatchObject({ retriable: false });
    expect(String((byName as Error).message)).toMatch(/localhost resolves to .* a private address/);
    const mapped = await webhook
      .deliver([ev(9)], config({ allowPrivateNetwork: false, url: url.replace('127.0.0.1', '[::ffff:127.0.0.1]') }), ctx)
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

  it('validates its config', () => {
    expect(webhook.configSchema.safeParse({ url: 'ftp://x' }).success).toBe(false);
    expect(webhook.configSchema.safeParse({ url, secret: 'plain' }).success).toBe(false);
  });
});
