import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { createRing } from './debugger.ts';

/**
 * A webhook receiver built into Pilot for the single-process demo: a `webhook` destination
 * pointed at `POST /pilot/demo-webhook` (with `allowPrivateNetwork: true`, since it is
 * loopback) shows what the sinks delivered, next to what ingest received, so the whole
 * path is visible on one page without setting up anything outside Orrery.
 *
 * It takes anything that is JSON and keeps the last 200 deliveries in memory. It has no
 * authentication (the sinks post to it like any destination); it only ever shows what was
 * posted to it, in the Pilot UI, to someone holding the admin token.
 */

export interface DemoDelivery {
  seq: number;
  /** ms since epoch. */
  at: number;
  /** Standard Webhooks id (the messageId) when the destination signs. */
  webhookId: string | null;
  /** One event, or several for a `batch: true` destination. */
  events: unknown[];
}

export interface DemoReceiver {
  routes: Hono;
  list(afterSeq?: number): DemoDelivery[];
  subscribe(fn: (d: DemoDelivery) => void): () => void;
}

/**
 * @example
 *   const demo = createDemoReceiver();
 *   app.route('/', demo.routes); // POST /pilot/demo-webhook
 */
export function createDemoReceiver(opts: { keep?: number; now?: () => number } = {}): DemoReceiver {
  const ring = createRing<DemoDelivery>(opts.keep ?? 200);
  const subscribers = new Set<(d: DemoDelivery) => void>();
  const now = opts.now ?? Date.now;
  let seq = 0;
  const routes = new Hono();
  routes.post(
    '/pilot/demo-webhook',
    bodyLimit({ maxSize: 1024 * 1024, onError: (c) => c.json({ success: false, code: 'payload_too_large', message: 'at most 1 MB' }, 413) }),
    async (c) => {
      let body: unknown;
      try {
        body = await c.req.json();
      } catch {
        return c.json({ success: false, code: 'invalid_json', message: 'the body is not JSON' }, 400);
      }
      const d: DemoDelivery = { seq: ++seq, at: now(), webhookId: c.req.header('webhook-id') ?? null, events: Array.isArray(body) ? body : [body] };
      ring.push(d);
      for (const fn of subscribers) fn(d);
      return c.json({ success: true });
    },
  );
  return {
    routes,
    list: (afterSeq = 0) => ring.toArray().filter((d) => d.seq > afterSeq),
    subscribe(fn) {
      subscribers.add(fn);
      return () => subscribers.delete(fn);
    },
  };
}
