import { appendFile, mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { verifyStandardWebhook } from '../core/auth.ts';
import { errorResponse } from '../core/contracts/http-error.ts';
import { InputError, OrreryError } from '../core/errors.ts';
import type { RefusalLog } from '../core/refusals.ts';
import { createRing } from './debugger.ts';

/**
 * A webhook receiver built into Pilot for the single-process demo: a `webhook` destination
 * pointed at `POST /pilot/demo-webhook` (with `allowPrivateNetwork: true`, since it is
 * loopback) shows what the sinks delivered, next to what ingest received, so the whole
 * path is visible on one page without setting up anything outside Orrery.
 *
 * It takes JSON signed the Standard Webhooks way (core/auth.ts) with the `secret` of a
 * webhook destination that posts here (`secrets()`, read from the live control plane at
 * each request, so a rotated secret works at once), and keeps the last 200 deliveries.
 * Anything else is 401 (`missing_signature`, `bad_signature`, `stale_timestamp`), recorded
 * with the other refused webhooks: what Pilot shows as "delivered" was delivered by
 * Orrery's sinks, never posted by whoever can reach the port. With a `file`, deliveries
 * are appended to it before the 200 goes back, so what a destination was told was delivered
 * is still shown after a restart, crash included (at least once: a redelivery shows twice).
 */

export interface DemoDelivery {
  seq: number;
  /** ms since epoch. */
  at: number;
  /** Standard Webhooks id (the messageId, or the first one and the count for a batch); null in files from before signing. */
  webhookId: string | null;
  /** One event, or several for a `batch: true` destination. */
  events: unknown[];
}

export interface DemoReceiver {
  routes: Hono;
  list(afterSeq?: number): DemoDelivery[];
  subscribe(fn: (d: DemoDelivery) => void): () => void;
}

export interface DemoReceiverOptions {
  keep?: number;
  now?: () => number;
  /** JSON lines of deliveries, kept across restarts; absent: in memory only. */
  file?: string;
  /** The signing secrets of the destinations that post here; none: every post is refused. */
  secrets: () => readonly string[];
  /** Where refused posts leave their trace. */
  refusals?: RefusalLog;
}

/**
 * @example
 *   const demo = await createDemoReceiver({ file: join(config.dataDir, 'pilot', 'demo-deliveries.jsonl'), secrets: () => demoSenderSecrets(controlPlane.current()) });
 *   app.route('/', demo.routes); // POST /pilot/demo-webhook
 */
export async function createDemoReceiver(opts: DemoReceiverOptions): Promise<DemoReceiver> {
  const keep = opts.keep ?? 200;
  const ring = createRing<DemoDelivery>(keep);
  const subscribers = new Set<(d: DemoDelivery) => void>();
  const now = opts.now ?? Date.now;
  const file = opts.file;
  let seq = 0;
  /** Lines in the file; past twice `keep` it is rewritten with the kept ones. */
  let lines = 0;
  if (file) {
    for (const d of await readDeliveries(file)) {
      ring.push(d);
      seq = Math.max(seq, d.seq);
      lines++;
    }
  }
  // Appends and rewrites one at a time, in seq order.
  let writing: Promise<void> = Promise.resolve();
  function persist(d: DemoDelivery): Promise<void> {
    if (!file) return Promise.resolve();
    const run = writing.then(async () => {
      // Created with the first delivery, not at start: a Pilot that never gets one leaves no trace.
      if (lines === 0) await mkdir(dirname(file), { recursive: true });
      if (lines + 1 > 2 * keep) {
        await replaceFile(file, ring.toArray());
        lines = ring.size;
      } else {
        await appendFile(file, `${JSON.stringify(d)}\n`, { mode: 0o600 });
        lines++;
      }
    });
    writing = run.catch(() => {});
    return run;
  }

  const routes = new Hono();
  routes.post(
    '/pilot/demo-webhook',
    bodyLimit({ maxSize: 1024 * 1024, onError: (c) => errorResponse(c, new InputError('payload_too_large', 'at most 1 MB')) }),
    async (c) => {
      const text = await c.req.text();
      const headers: Record<string, string> = {};
      c.req.raw.headers.forEach((v, k) => (headers[k.toLowerCase()] = v));
      let webhookId: string;
      try {
        webhookId = verifyStandardWebhook(headers, text, opts.secrets(), now());
      } catch (err) {
        if (!(err instanceof OrreryError)) throw err;
        opts.refusals?.record({ receiver: 'pilot/demo-webhook', reason: err.code, status: err.status });
        return c.json({ success: false, code: err.code, message: err.message }, err.status as 401);
      }
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        return c.json({ success: false, code: 'invalid_json', message: 'the body is not JSON' }, 400);
      }
      const d: DemoDelivery = { seq: ++seq, at: now(), webhookId, events: Array.isArray(body) ? body : [body] };
      ring.push(d);
      // Before the answer: a 2xx tells the sink it is delivered, so it must be on disk by then.
      // A failed write is a 5xx, and the sink retries.
      await persist(d);
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

/** The deliveries in `file`, oldest first; a torn line (a crash mid-append) is skipped. */
async function readDeliveries(file: string): Promise<DemoDelivery[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  // A torn last line (a crash mid-append) would swallow the next append: end it first.
  if (text.length > 0 && !text.endsWith('\n')) await appendFile(file, '\n');
  const out: DemoDelivery[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      const d = JSON.parse(line) as DemoDelivery;
      if (typeof d.seq === 'number' && Array.isArray(d.events)) out.push(d);
    } catch {
      // A partial line: the append it belonged to never answered 2xx.
    }
  }
  return out;
}

async function replaceFile(file: string, deliveries: DemoDelivery[]): Promise<void> {
  const tmp = join(dirname(file), `.${Date.now()}.tmp`);
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(deliveries.map((d) => `${JSON.stringify(d)}\n`).join(''));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}
