import type { Envelope } from '../../core/envelope.ts';
import { enrich } from '../../ingest/enrich.ts';
import { validateMessage } from '../../ingest/validate.ts';

/**
 * The events every scenario sends: one shape, an analytics-node style `track` of about
 * 400 bytes, so that sizes match between Orrery and its baselines. Envelopes are made by
 * ingest's own validate + enrich, so preloaded topics hold exactly what ingest writes.
 */

export const SOURCE_ID = 'bench';
export const WRITE_KEY = 'bench-write-key-0001';
export const DESTINATION_ID = 'hook';
export const AUTH_HEADER = `Basic ${Buffer.from(`${WRITE_KEY}:`).toString('base64')}`;
/** Distinct users per tag (keys spread over every partition). */
export const USERS = 500;

const LIBRARY = { name: 'analytics-node', version: '3.1.0' };

/** One inbound Segment track call. `id` and `user` may hold autocannon's `[<id>]` placeholder. */
export function inbound(id: string, user: string, n: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'track',
    event: 'Order Completed',
    userId: user,
    messageId: id,
    timestamp: '2025-06-01T12:00:00.000Z',
    properties: {
      orderId: `order-${n}`,
      revenue: 42.5,
      currency: 'EUR',
      coupon: 'SUMMER',
      products: [
        { sku: 'sku-1', name: 'Tea', price: 12.5, quantity: 2 },
        { sku: 'sku-2', name: 'Cup', price: 17.5, quantity: 1 },
      ],
      ...extra,
    },
    context: { library: LIBRARY, locale: 'en-GB', page: { path: '/checkout', url: 'https://shop.example/checkout' } },
  };
}

/** Body of POST /v1/track for autocannon: a fresh messageId and user on every request (`-I`). */
export function trackBody(): string {
  return JSON.stringify(inbound('[<id>]', 'user-[<id>]', 1));
}

/** Body of POST /v1/batch for autocannon: `size` events, messageIds unique per request (`-I`). */
export function batchBody(size: number): string {
  const batch = Array.from({ length: size }, (_, i) => inbound(`[<id>]-${i}`, `user-[<id>]-${i % 20}`, i));
  return JSON.stringify({ batch, sentAt: '2025-06-01T12:00:00.000Z' });
}

/** The envelope ingest would write for `inbound(…)`, and its key. */
export function envelopeOf(message: Record<string, unknown>, receivedAt = Date.now()): { key: string; envelope: Envelope } {
  return enrich(validateMessage(message, { index: 0 }), {
    sourceId: SOURCE_ID,
    receivedAt,
    ip: '127.0.0.1',
    newId: () => crypto.randomUUID(),
  });
}

/** Event `i` of a run tagged `tag`: unique messageId, one of USERS users. */
export function taggedInbound(tag: string, i: number): Record<string, unknown> {
  return inbound(`${tag}-${i}`, `${tag}-user-${i % USERS}`, i);
}

/** Raw-topic records (as ingest writes them) for events `from … to-1` of `tag`. */
export function rawRecords(tag: string, from: number, to: number): Array<{ key: string; value: string }> {
  const out: Array<{ key: string; value: string }> = [];
  const receivedAt = Date.now();
  for (let i = from; i < to; i++) {
    const { key, envelope } = envelopeOf(taggedInbound(tag, i), receivedAt);
    out.push({ key, value: JSON.stringify(envelope) });
  }
  return out;
}

/** Destination-topic records (as the router writes them) for events `from … to-1` of `tag`. */
export function routedRecords(tag: string, from: number, to: number): Array<{ key: string; value: string }> {
  const out: Array<{ key: string; value: string }> = [];
  const receivedAt = Date.now();
  const routedAt = new Date(receivedAt).toISOString();
  for (let i = from; i < to; i++) {
    const { key, envelope } = envelopeOf(taggedInbound(tag, i), receivedAt);
    out.push({ key, value: JSON.stringify({ ...envelope, routing: { configVersion: 0, destinationId: DESTINATION_ID, routedAt } }) });
  }
  return out;
}
