import { http } from 'msw';
import { setupServer } from 'msw/node';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import type { Envelope } from '../../core/envelope.ts';
import { DeliveryError, type DeliveryContext } from './types.ts';

/**
 * What the vendor destinations' tests share: a stand-in for the vendor's HTTP API (msw:
 * these are third-party APIs we cannot reach from tests), a delivery context with a fixed
 * clock, an envelope builder and a way to catch the DeliveryError of a failed delivery.
 */

/** The tests' clock: deliveries happen a minute after the events' timestamp. */
export const NOW = Date.parse('2025-03-01T12:00:00.000Z');

/** One request the vendor stand-in received. */
export interface Seen<Body> {
  url: URL;
  method: string;
  headers: Headers;
  body: Body;
}

/**
 * Starts an msw server for the test file (call it at the top level: it registers the
 * vitest hooks). `accept(url, answer)` records every POST to `url` in `seen`, parsed as
 * JSON, and answers with `answer()`; handlers and `seen` are reset after each test.
 *
 * @example
 *   const vendor = vendorApi<{ events: unknown[] }>();
 *   vendor.accept(URL, () => HttpResponse.json({ ok: true }));
 *   await destination.deliver([envelope({ type: 'track', event: 'E' })], config, ctx());
 *   expect(vendor.seen[0]!.body.events).toHaveLength(1);
 */
export function vendorApi<Body>(): { seen: Array<Seen<Body>>; accept(url: string, answer: () => Response): void } {
  const seen: Array<Seen<Body>> = [];
  const server = setupServer();
  beforeAll(() => server.listen({ onUnhandledFrame: 'error' }));
  afterEach(() => {
    server.resetHandlers();
    seen.length = 0;
  });
  afterAll(() => server.close());
  return {
    seen,
    accept(url, answer) {
      server.use(
        http.post(url, async ({ request }) => {
          seen.push({ url: new URL(request.url), method: request.method, headers: request.headers, body: (await request.json()) as Body });
          return answer();
        }),
      );
    },
  };
}

export function ctx(): DeliveryContext {
  return { fetch: globalThis.fetch, now: () => NOW, signal: new AbortController().signal };
}

/** An envelope of the given type, for user-42 / anon-7 of source src_1, sent a minute before NOW. */
export function envelope(over: Partial<Envelope> & Pick<Envelope, 'type'>): Envelope {
  return {
    v: 1,
    sourceId: 'src_1',
    messageId: 'msg-0001',
    timestamp: '2025-03-01T11:59:00.000Z',
    receivedAt: '2025-03-01T11:59:01.000Z',
    userId: 'user-42',
    anonymousId: 'anon-7',
    ...over,
  } as Envelope;
}

/** The DeliveryError a delivery rejected with (fails the test when it resolved or threw something else). */
export async function failure(p: Promise<unknown>): Promise<DeliveryError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DeliveryError);
  return err as DeliveryError;
}
