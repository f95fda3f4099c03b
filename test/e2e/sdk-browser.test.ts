import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Envelope } from '../../core/envelope.ts';
import { uniqueName, waitFor } from '../helpers/index.ts';
import { startIngestOnKafka, type IngestOnKafka } from '../helpers/ingest.ts';
import type { OrreryProcess } from '../helpers/process.ts';

/**
 * Issue #17, the browser rows: real, unmodified tracking SDKs, loaded from their installed
 * dist files into Debian's Chromium, send to `orrery start ingest` on real Kafka from a page
 * on another origin (so CORS is real). Each event must reach the raw topic once, enriched,
 * and the page must see only successes: every request to Orrery 2xx, none repeated, no
 * console error. The device clock runs an hour slow (Playwright's clock), so the corrected
 * `timestamp` is visibly not the client's.
 *
 * What each sends (read in the SDKs' source and seen here in page.on('request')):
 *
 * @segment/analytics-next 1.84.3 (analytics.js; dist/umd/index.js, the `AnalyticsNext` global)
 * - Self-hosted with `AnalyticsBrowser.load({ writeKey, cdnSettings }, { integrations:
 *   { 'Segment.io': { apiHost: '<orrery host:port>/v1', protocol: 'http' } } })`: inline
 *   `cdnSettings` keep it off cdn.segment.com (no lazily loaded chunk is needed then);
 *   `protocol` defaults to https, so a plain-http Orrery needs `protocol: 'http'`.
 * - Standard delivery: one `fetch` POST a call to `<protocol>://<apiHost>/{t,i,p,g,a,s}`
 *   (track, identify, page, group, alias, screen), `Content-Type: text/plain`, no
 *   Content-Encoding; the write key both as `Authorization: Basic base64(key:)` and as
 *   `writeKey` in the JSON body, with `messageId` ("ajs-next-…"), `anonymousId`, `timestamp`,
 *   `sentAt`, `context.{library,page,userAgent,userAgentData,locale,timezone}`, `_metadata`.
 *   The Authorization header makes every call a CORS preflight (OPTIONS, Access-Control-
 *   Request-Headers: authorization; a retry adds x-retry-count).
 * - `deliveryStrategy: { strategy: 'batching' }`: POST `<apiHost>/b` with
 *   `{ writeKey, batch: [...], sentAt }` (no per-event sentAt), same headers, after 10
 *   events or 5 s (defaults).
 * - A failure it may retry (network error, 5xx, 429) is sent again with `X-Retry-Count`;
 *   4xx other than 429 is dropped.
 * - Its own metrics: every 30 s (sampleRate 1 unless the CDN settings say otherwise) a POST
 *   `<apiHost>/m`, text/plain, `{ series: [{ type: 'Counter', metric: 'analytics_js.invoke',
 *   ... }] }`, no write key.
 *
 * @rudderstack/analytics-js 3.34.1 (dist/npm/modern/bundled/umd, plugins bundled in)
 * - `new rudderanalytics.RudderAnalytics().load(writeKey, '<orrery url>', { getSourceConfig })`:
 *   `getSourceConfig` returning `{ source: { id, config: {}, destinations: [] , ... } }`
 *   replaces the fetch of api.rudderstack.com/sourceConfig (`configUrl` can instead point at
 *   a server of one's own). The bundled build loads no plugin from RudderStack's CDN; the
 *   non-bundled one fetches plugins from `pluginsSDKBaseURL`, which the npm package does
 *   not ship. With no destinations, `destSDKBaseURL` is never fetched; error reporting
 *   (`<dataPlaneUrl>/rsaMetrics`) stays off unless the source config enables statsCollection.
 * - XHR POST a call to `<dataPlaneUrl>/v1/{track,identify,page,group,alias}` (no screen in
 *   the browser SDK), `Content-Type: application/json;charset=UTF-8`, no Content-Encoding,
 *   `Authorization: Basic base64(key:)`, plus `AnonymousId: base64(anonymousId)` and
 *   `SentAt` headers, so every call is preflighted. Body: the event with `messageId`
 *   (UUID), `originalTimestamp` and `sentAt` (no `timestamp`), `channel: 'web'`,
 *   `context.{library: { name: 'RudderLabs JavaScript SDK' },page,userAgent,sessionId,...}`.
 *   Retries (up to 10, from 1 s) on network errors, 429 and 5xx, with Rsa-Retry-* headers.
 * - Not covered here: `useBeacon: true` sends `navigator.sendBeacon` to
 *   `<dataPlaneUrl>/beacon/v1/batch?writeKey=<key>` (text/plain Blob `{ batch, sentAt }`),
 *   a path Orrery does not serve.
 *
 * By hand: a pixel, GET `/v1/pixel/<type>?data=<base64 JSON>` (no-cors, so no Origin
 * header: allowedOrigins cannot apply to it), and `navigator.sendBeacon`: a string body goes
 * as `text/plain;charset=UTF-8` with no preflight; a Blob goes as its type, and a type that
 * is not CORS-safelisted (application/json) is preflighted with credentials (a beacon is
 * always `credentials: include`), so the preflight must allow credentials.
 */
const CHROMIUM = '/usr/bin/chromium';
const MODULES = fileURLToPath(new URL('../../node_modules/', import.meta.url));
const AJS_DIR = join(MODULES, '@segment/analytics-next/dist/umd');
const RUDDER_DIR = join(MODULES, '@rudderstack/analytics-js/dist/npm/modern/bundled/umd');
const WRITE_KEY = 'sdk-browser-write-key';
/** A source whose rate limit (a burst of 1, refilled every 2 s) refuses a second call at once. */
const LIMITED_KEY = 'sdk-browser-limited-key';
/** The device clock runs this far behind. */
const SKEW_MS = 60 * 60 * 1000;

/**
 * The site's own code for analytics.js, as a self-hosting site would write it: the CDN
 * settings inline, the Segment.io destination pointed at Orrery over plain http, and
 * whatever else `segmentio` adds (a delivery strategy); everything else the SDK's default.
 */
const LOAD_ANALYTICS = `window.loadAnalytics = async (writeKey, apiHost, segmentio = {}) => {
  const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
    { writeKey, cdnSettings: { integrations: { 'Segment.io': { apiKey: writeKey } } } },
    { integrations: { 'Segment.io': { apiHost, protocol: 'http', ...segmentio } } },
  );
  return analytics;
};`;

const PAGES: Record<string, string> = {
  'segment.html': `<!doctype html><title>analytics.js</title><script src="/ajs/index.js"></script><script>${LOAD_ANALYTICS}</script>`,
  'rudder.html': '<!doctype html><title>rudder</title><script src="/rudder/index.js"></script>',
  'plain.html': '<!doctype html><title>plain</title>',
};
const TYPES: Record<string, string> = { '.js': 'text/javascript', '.map': 'application/json' };

/** The site: its pages and the SDKs' installed dist files, on an origin of its own. */
async function startSite(): Promise<{ port: number; close(): Promise<void> }> {
  const mounts: Array<[string, string]> = [
    ['/ajs/', AJS_DIR],
    ['/rudder/', RUDDER_DIR],
  ];
  const server: Server = createServer(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://site').pathname;
    const page = PAGES[path.slice(1)];
    if (page) return void res.writeHead(200, { 'content-type': 'text/html' }).end(page);
    if (path === '/favicon.ico') return void res.writeHead(204).end();
    const mount = mounts.find(([prefix]) => path.startsWith(prefix));
    const file = mount && normalize(join(mount[1], path.slice(mount[0].length)));
    if (!mount || !file!.startsWith(mount[1])) return void res.writeHead(404).end();
    try {
      const body = await readFile(file!);
      res.writeHead(200, { 'content-type': TYPES[extname(file!)] ?? 'application/octet-stream' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as { port: number }).port, close: () => new Promise((r) => server.close(() => r())) };
}

/** A request the page sent to Orrery, with what came back (no status: it failed). */
interface Sent {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string | null;
  status?: number;
  failure?: string;
}

interface Preflight {
  path: string;
  requestHeaders: Record<string, string>;
  status?: number;
  headers?: Record<string, string>;
}

/** Orrery's raw answer to a request (not a preflight), and the CORS error if Chromium blocked it. */
interface Answer {
  path: string;
  status?: number;
  headers?: Record<string, string>;
  corsError?: string;
}

/**
 * Watches a page: what it sends to Orrery (page events), the preflights, Orrery's raw
 * answers and the CORS blocks (Chrome DevTools Protocol: Playwright does not surface
 * those, nor the CORS headers of a beacon's answer), and every problem: a
 * failed request, a console error or warning, an uncaught error, a request to any origin
 * but the site's and Orrery's.
 */
async function watch(context: BrowserContext, page: Page, orreryUrl: string, siteOrigin: string) {
  const sent: Sent[] = [];
  const problems: string[] = [];
  const byRequest = new Map<object, Sent>();
  const path = (url: string) => url.slice(orreryUrl.length);
  page.on('request', (r) => {
    if (!r.url().startsWith(siteOrigin) && !r.url().startsWith(orreryUrl)) problems.push(`left the test's origins: ${r.url()}`);
    if (!r.url().startsWith(orreryUrl)) return;
    const s: Sent = { method: r.method(), path: path(r.url()), headers: r.headers(), body: r.postData() };
    byRequest.set(r, s);
    sent.push(s);
  });
  page.on('response', async (res) => {
    const s = byRequest.get(res.request());
    if (!s) return;
    s.headers = await res.request().allHeaders();
    s.status = res.status();
  });
  page.on('requestfailed', (r) => {
    const s = byRequest.get(r);
    if (s) s.failure = r.failure()?.errorText;
    problems.push(`${r.method()} ${r.url()} failed: ${r.failure()?.errorText}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const urls = new Map<string, string>();
  const preflights = new Map<string, Preflight>();
  const raw = new Map<string, { status: number; headers: Record<string, string> }>();
  const corsErrors = new Map<string, string>();
  cdp.on('Network.requestWillBeSent', (e) => {
    if (!e.request.url.startsWith(orreryUrl)) return;
    urls.set(e.requestId, e.request.url);
    if (e.request.method === 'OPTIONS') preflights.set(e.requestId, { path: path(e.request.url), requestHeaders: lower(e.request.headers) });
  });
  cdp.on('Network.responseReceived', (e) => {
    const p = preflights.get(e.requestId);
    if (p) Object.assign(p, { status: e.response.status, headers: lower(e.response.headers) });
  });
  cdp.on('Network.responseReceivedExtraInfo', (e) => raw.set(e.requestId, { status: e.statusCode, headers: lower(e.headers) }));
  cdp.on('Network.loadingFailed', (e) => {
    if (e.corsErrorStatus && urls.has(e.requestId)) corsErrors.set(e.requestId, e.corsErrorStatus.corsError);
  });
  return {
    sent,
    problems,
    preflights: () => [...preflights.values()],
    answers: (): Answer[] =>
      [...urls.keys()].filter((id) => !preflights.has(id) && (raw.has(id) || corsErrors.has(id))).map((id) => ({ path: path(urls.get(id)!), ...raw.get(id), corsError: corsErrors.get(id) })),
    blocked(): Answer[] {
      return this.answers().filter((a) => a.corsError);
    },
  };
}

function lower(headers: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), String(v)]));
}

/** The call type of a single-call path, long or short (/v1/track, /v1/t, /v1/pixel/track). */
const TYPE_OF: Record<string, string> = { t: 'track', i: 'identify', p: 'page', s: 'screen', g: 'group', a: 'alias' };

/** The messages a request carried: its body (typed by its path), or its batch. */
function messagesOf(s: Sent): Array<Record<string, any>> {
  const body = JSON.parse(s.body ?? 'null') as Record<string, any>;
  if (Array.isArray(body.batch)) return body.batch.map((m: Record<string, any>) => ({ ...m, sentAt: m.sentAt ?? body.sentAt }));
  const last = s.path.split('?')[0]!.split('/').at(-1)!;
  return [{ ...body, type: body.type ?? TYPE_OF[last] ?? last }];
}

const iso = (ms: number) => new Date(ms).toISOString();

describe('browser SDKs against ingest, in Chromium', () => {
  let orrery: OrreryProcess;
  let site: Awaited<ReturnType<typeof startSite>>;
  /** In the source's allowedOrigins. */
  let siteOrigin: string;
  /** The same site by another name: not in allowedOrigins. */
  let otherOrigin: string;
  let ingest: IngestOnKafka;
  let browser: Browser;
  /** The envelopes on the raw topic so far. */
  const raw = (): Envelope[] => ingest.envelopes();

  beforeAll(async () => {
    site = await startSite();
    siteOrigin = `http://127.0.0.1:${site.port}`;
    otherOrigin = `http://localhost:${site.port}`;
    // One partition: the topic is in the order ingest took the events, so an event that
    // arrives after another settles whether the other was taken.
    ingest = await startIngestOnKafka('it-sdk-browser', `sources:\n  - id: web\n    writeKeys: [${WRITE_KEY}]\n    allowedOrigins: ['${siteOrigin}']\n  - id: limited\n    writeKeys: [${LIMITED_KEY}]\n    allowedOrigins: ['${siteOrigin}']\n    rateLimit: { eventsPerSecond: 0.5, burst: 1 }\n`, {
      KAFKA_TOPIC_PARTITIONS: '1',
    });
    orrery = ingest.orrery;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await ingest?.stop();
    await site?.close();
  });

  /** Where analytics.js is told to send: Orrery's host and port, and /v1. */
  const apiHost = () => `${new URL(orrery.url).host}/v1`;

  /** A fresh browser profile whose clock runs SKEW_MS slow, on one of the site's pages. */
  async function open(file: string, origin = siteOrigin) {
    const context = await browser.newContext();
    await context.clock.install({ time: Date.now() - SKEW_MS });
    const page = await context.newPage();
    const seen = await watch(context, page, orrery.url, origin);
    await page.goto(`${origin}/${file}`);
    const { url, userAgent } = await page.evaluate(() => ({ url: (globalThis as any).location.href as string, userAgent: navigator.userAgent }));
    return { context, page, seen, url, userAgent };
  }

  /**
   * Sends a last event straight to Orrery and waits for it on the topic: with one
   * partition, whatever ingest took before it is on the topic by then.
   */
  async function settle(): Promise<void> {
    const messageId = uniqueName('settle');
    const res = await fetch(`${orrery.url}/v1/track`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Basic ${btoa(`${WRITE_KEY}:`)}` },
      body: JSON.stringify({ messageId, anonymousId: 'settle', event: 'Settle' }),
    });
    expect(res.status).toBe(200);
    await waitFor(() => raw().some((e) => e.messageId === messageId), { what: 'the settling event' });
  }

  /**
   * Every message the page sent reached the topic exactly once, enriched: ids as sent,
   * sourceId, receivedAt, context.ip, the timestamp corrected for the slow clock, no write key.
   */
  async function expectDelivered(sent: Sent[], started: number): Promise<Map<string, Envelope>> {
    const messages = sent.flatMap(messagesOf);
    const ids = messages.map((m) => m.messageId as string);
    expect(new Set(ids).size).toBe(ids.length);
    await waitFor(() => ids.every((id) => raw().some((e) => e.messageId === id)), { what: `${ids.length} events on the raw topic` });
    await settle();
    const byId = new Map<string, Envelope>();
    for (const m of messages) {
      const copies = raw().filter((e) => e.messageId === m.messageId);
      expect(copies, `copies of ${m.messageId}`).toHaveLength(1);
      const env = copies[0]!;
      byId.set(m.messageId, env);
      expect(env).toMatchObject({ v: 1, sourceId: 'web', type: m.type, anonymousId: m.anonymousId });
      expect(env.userId).toBe(m.userId || undefined);
      expect(env).not.toHaveProperty('writeKey');
      expect(env.context?.ip).toBe('127.0.0.1');
      const receivedAt = Date.parse(env.receivedAt);
      expect(receivedAt).toBeGreaterThanOrEqual(started);
      expect(receivedAt).toBeLessThanOrEqual(Date.now());
      const original = Date.parse(m.timestamp ?? m.originalTimestamp);
      const sentAt = Date.parse(m.sentAt);
      expect(env.originalTimestamp).toBe(iso(original));
      expect(env.sentAt).toBe(iso(sentAt));
      // The client's clock is an hour slow; the corrected time is the server's.
      expect(receivedAt - original).toBeGreaterThan(SKEW_MS - 60_000);
      expect(env.timestamp).toBe(iso(receivedAt - (sentAt - original)));
    }
    return byId;
  }

  /** Each request answered 2xx once, with the page's origin allowed, and nothing went wrong. */
  function expectCleanDelivery(seen: Awaited<ReturnType<typeof watch>>, origin: string): void {
    expect(seen.problems).toEqual([]);
    for (const s of seen.sent) {
      expect(s.status, `${s.method} ${s.path}`).toBeGreaterThanOrEqual(200);
      expect(s.status, `${s.method} ${s.path}`).toBeLessThan(300);
      expect(s.headers['x-retry-count']).toBeUndefined();
    }
    const answers = seen.answers();
    expect(answers).toHaveLength(seen.sent.length);
    expect(seen.blocked()).toEqual([]);
    for (const a of answers) expect(a.headers?.['access-control-allow-origin'], a.path).toBe(origin);
  }

  /** Every call preflighted, and the preflight allowed the origin and the headers asked for. */
  function expectPreflightsPassed(seen: Awaited<ReturnType<typeof watch>>, origin: string): void {
    const paths = new Set(seen.sent.map((s) => s.path));
    const preflights = seen.preflights();
    expect(new Set(preflights.map((p) => p.path))).toEqual(paths);
    for (const p of preflights) {
      expect(p.requestHeaders.origin).toBe(origin);
      expect(p.status).toBe(204);
      expect(p.headers?.['access-control-allow-origin']).toBe(origin);
      expect(p.headers?.['access-control-allow-headers']).toBe(p.requestHeaders['access-control-request-headers']);
    }
  }

  /**
   * An SDK's calls: answered cleanly, each preflighted asking for `preflightHeaders`, and on
   * the topic once with the SDK's `context`. Returns the envelopes in the order sent.
   */
  async function expectSdkDelivered(seen: Awaited<ReturnType<typeof watch>>, started: number, preflightHeaders: string, context: Record<string, unknown>) {
    expectCleanDelivery(seen, siteOrigin);
    expectPreflightsPassed(seen, siteOrigin);
    expect(seen.preflights()[0]!.requestHeaders['access-control-request-headers']).toBe(preflightHeaders);
    const events = await expectDelivered(seen.sent, started);
    for (const env of events.values()) expect(env.context).toMatchObject(context);
    return [...events.values()];
  }

  it('analytics.js (@segment/analytics-next): every call type, one request each, enriched on the topic', async () => {
    const started = Date.now();
    const { page, seen, url, userAgent } = await open('segment.html');
    const result = await page.evaluate(
      async ({ writeKey, apiHost }) => {
        const analytics = await (globalThis as any).loadAnalytics(writeKey, apiHost);
        const errors: unknown[] = [];
        analytics.on('error', (e: unknown) => errors.push(String(e)));
        const ctxs = [
          await analytics.page('Docs', 'Home', { section: 'intro' }),
          await analytics.track('Signed Up', { plan: 'pro' }),
          await analytics.identify('ada', { email: 'ada@example.com' }),
          await analytics.track('Order Completed', { revenue: 42 }),
          await analytics.group('acme', { name: 'Acme' }),
          await analytics.screen('Cart'),
          await analytics.alias('ada-2'),
        ];
        return { failed: ctxs.map((c) => c.failedDelivery()?.reason).filter(Boolean).map(String), errors, anonymousId: analytics.user().anonymousId() };
      },
      { writeKey: WRITE_KEY, apiHost: apiHost() },
    );
    expect(result).toMatchObject({ failed: [], errors: [] });
    await waitFor(() => seen.sent.length === 7 && seen.sent.every((s) => s.status !== undefined || s.failure), { what: 'the 7 requests to finish' });

    expect(seen.sent.map((s) => `${s.method} ${s.path}`)).toEqual(['POST /v1/p', 'POST /v1/t', 'POST /v1/i', 'POST /v1/t', 'POST /v1/g', 'POST /v1/s', 'POST /v1/a']);
    for (const s of seen.sent) {
      expect(s.headers['content-type']).toBe('text/plain');
      expect(s.headers['content-encoding']).toBeUndefined();
      expect(s.headers.authorization).toBe(`Basic ${btoa(`${WRITE_KEY}:`)}`);
      expect(JSON.parse(s.body!)).toMatchObject({ writeKey: WRITE_KEY, anonymousId: result.anonymousId });
    }
    const events = await expectSdkDelivered(seen, started, 'authorization', { library: { name: 'analytics.js', version: 'next-1.84.3' }, page: { url }, userAgent });
    for (const env of events) expect(env.messageId).toMatch(/^ajs-next-/);
    const [pageview, signedUp, identify, order, group, screen, alias] = events;
    expect(pageview).toMatchObject({ name: 'Home', category: 'Docs', properties: { section: 'intro', url } });
    expect(signedUp).toMatchObject({ event: 'Signed Up', properties: { plan: 'pro' } });
    expect(signedUp!.userId).toBeUndefined();
    expect(identify).toMatchObject({ userId: 'ada', traits: { email: 'ada@example.com' } });
    expect(order).toMatchObject({ userId: 'ada', event: 'Order Completed', properties: { revenue: 42 } });
    expect(group).toMatchObject({ userId: 'ada', groupId: 'acme', traits: { name: 'Acme' } });
    expect(screen).toMatchObject({ userId: 'ada', name: 'Cart' });
    // analytics.js 1.84.3 stamps every event with the current user's id, alias too: its
    // userId is 'ada', not the new 'ada-2' (the SDK's doing; Orrery keeps what was sent).
    expect(alias).toMatchObject({ userId: 'ada', previousId: 'ada' });
  });

  it("analytics.js's own metrics (POST /v1/m every 30 s by default) are answered 2xx", async () => {
    const { page, seen } = await open('segment.html');
    await page.evaluate(
      async ({ writeKey, apiHost }) => {
        const analytics = await (globalThis as any).loadAnalytics(writeKey, apiHost);
        await analytics.track('Metered');
      },
      { writeKey: WRITE_KEY, apiHost: apiHost() },
    );
    await page.clock.fastForward(31_000);
    await waitFor(() => seen.sent.some((s) => s.path === '/v1/m' && (s.status !== undefined || s.failure)), { what: 'the metrics flush' });
    const metrics = seen.sent.find((s) => s.path === '/v1/m')!;
    expect(metrics.headers['content-type']).toBe('text/plain');
    expect(JSON.parse(metrics.body!)).toMatchObject({ series: [{ type: 'Counter', metric: 'analytics_js.invoke', value: 1 }] });
    expectCleanDelivery(seen, siteOrigin);
  });

  it('analytics.js retries a call refused with 429 (Retry-After), and the event arrives once', async () => {
    const { page, seen } = await open('segment.html');
    const run = uniqueName('retry');
    await page.evaluate(
      async ({ writeKey, apiHost, run }) => {
        const analytics = await (globalThis as any).loadAnalytics(writeKey, apiHost);
        await analytics.track('First', { run });
        // Over the source's rate limit: 429, then a retry once the bucket refills.
        void analytics.track('Second', { run });
      },
      { writeKey: LIMITED_KEY, apiHost: apiHost(), run },
    );
    const ours = () => raw().filter((e) => e.sourceId === 'limited' && e.properties?.run === run);
    await waitFor(() => ours().length === 2, { timeoutMs: 30_000, what: 'both events, the second after its retry' });
    await settle();
    expect(ours().map((e) => e.event)).toEqual(['First', 'Second']);
    const tracks = seen.sent.filter((s) => s.path === '/v1/t');
    expect(tracks.map((s) => s.status)).toEqual([200, 429, 200]);
    // The retry is the same event, marked as a retry by the SDK.
    const [, refused, retried] = tracks.map((s) => JSON.parse(s.body!) as { messageId: string });
    expect(retried!.messageId).toBe(refused!.messageId);
    expect(tracks[2]!.headers['x-retry-count']).toBe('1');
    expect(seen.blocked()).toEqual([]);
  });

  it('analytics.js in batching mode: one POST /v1/b with the batch, each event once', async () => {
    const started = Date.now();
    const { page, seen, url } = await open('segment.html');
    await page.evaluate(
      async ({ writeKey, apiHost }) => {
        const analytics = await (globalThis as any).loadAnalytics(writeKey, apiHost, { deliveryStrategy: { strategy: 'batching' } });
        await analytics.page();
        await analytics.identify('grace');
        await analytics.track('Added To Cart', { sku: 'x-1' });
        await analytics.group('hopper-inc');
        await analytics.screen('Basket');
        await analytics.alias('grace-2');
      },
      { writeKey: WRITE_KEY, apiHost: apiHost() },
    );
    expect(seen.sent).toEqual([]);
    // Fewer than 10 events wait for the 5 s timer.
    await page.clock.fastForward(5_000);
    await waitFor(() => seen.sent.length === 1 && seen.sent[0]!.status !== undefined, { what: 'the batch request' });
    await page.clock.fastForward(5_000);

    expect(seen.sent).toHaveLength(1);
    const [batch] = seen.sent;
    expect(batch).toMatchObject({ method: 'POST', path: '/v1/b', headers: { 'content-type': 'text/plain', authorization: `Basic ${btoa(`${WRITE_KEY}:`)}` } });
    const body = JSON.parse(batch!.body!);
    expect(body).toMatchObject({ writeKey: WRITE_KEY, sentAt: expect.any(String) });
    expect(body.batch.map((m: Record<string, unknown>) => m.type)).toEqual(['page', 'identify', 'track', 'group', 'screen', 'alias']);
    expect(body.batch.every((m: Record<string, unknown>) => m.sentAt === undefined)).toBe(true);
    const events = await expectSdkDelivered(seen, started, 'authorization', { library: { name: 'analytics.js' }, page: { url } });
    expect(events.map((e) => e.userId)).toEqual([undefined, 'grace', 'grace', 'grace', 'grace', 'grace']);
    expect(events.at(-1)).toMatchObject({ type: 'alias', previousId: 'grace' });
  });

  it('RudderStack JS SDK v3 (@rudderstack/analytics-js): every call type, one request each, enriched on the topic', async () => {
    const started = Date.now();
    const { page, seen, url, userAgent } = await open('rudder.html');
    const anonymousId = await page.evaluate(
      async ({ writeKey, dataPlaneUrl }) => {
        const rudder = new (globalThis as any).rudderanalytics.RudderAnalytics();
        await new Promise<void>((resolve) =>
          rudder.load(writeKey, dataPlaneUrl, {
            // In place of the fetch of RudderStack's /sourceConfig: a source with no destinations.
            getSourceConfig: () => ({ source: { id: 'web', name: 'Web', enabled: true, workspaceId: 'self-hosted', config: {}, destinations: [] } }),
            onLoaded: () => resolve(),
          }),
        );
        rudder.page('Docs', 'Home', { section: 'intro' });
        rudder.track('Signed Up', { plan: 'pro' });
        rudder.identify('lin', { email: 'lin@example.com' });
        rudder.track('Order Completed', { revenue: 42 });
        rudder.group('acme', { name: 'Acme' });
        rudder.alias('lin-2');
        return rudder.getAnonymousId() as string;
      },
      { writeKey: WRITE_KEY, dataPlaneUrl: orrery.url },
    );
    await waitFor(() => seen.sent.length === 6 && seen.sent.every((s) => s.status !== undefined || s.failure), { what: 'the 6 requests to finish' });
    // Nothing more comes (no retry): the retry queue's first retry would be after 1 s.
    await page.clock.fastForward(5_000);

    expect(seen.sent.map((s) => `${s.method} ${s.path}`)).toEqual(['POST /v1/page', 'POST /v1/track', 'POST /v1/identify', 'POST /v1/track', 'POST /v1/group', 'POST /v1/alias']);
    for (const s of seen.sent) {
      expect(s.headers).toMatchObject({
        'content-type': 'application/json;charset=UTF-8',
        authorization: `Basic ${btoa(`${WRITE_KEY}:`)}`,
        anonymousid: btoa(anonymousId),
        sentat: JSON.parse(s.body!).sentAt,
      });
      expect(s.headers['content-encoding']).toBeUndefined();
      expect(JSON.parse(s.body!)).not.toHaveProperty('writeKey');
    }
    const events = await expectSdkDelivered(seen, started, 'anonymousid,authorization,content-type,sentat', {
      library: { name: 'RudderLabs JavaScript SDK', version: '3.34.1' },
      page: { url },
      userAgent,
    });
    for (const env of events) expect(env).toMatchObject({ anonymousId, channel: 'web' });
    const [pageview, signedUp, identify, order, group, alias] = events;
    expect(pageview).toMatchObject({ name: 'Home', category: 'Docs', properties: { section: 'intro', url } });
    expect(signedUp).toMatchObject({ event: 'Signed Up', properties: { plan: 'pro' } });
    expect(identify).toMatchObject({ userId: 'lin', context: { traits: { email: 'lin@example.com' } } });
    expect(order).toMatchObject({ userId: 'lin', event: 'Order Completed', properties: { revenue: 42 } });
    expect(group).toMatchObject({ userId: 'lin', groupId: 'acme', traits: { name: 'Acme' } });
    expect(alias).toMatchObject({ userId: 'lin-2', previousId: 'lin' });
  });

  /**
   * Runs `send` in a plain page of the site (the page gets the write key, Orrery's URL and a
   * run id), then checks every request it made was answered 2xx with nothing wrong, and
   * that the messages arrived once, enriched.
   */
  type HandArgs = { writeKey: string; orrery: string; run: string };
  async function byHand<T, X extends object = {}>(send: (args: HandArgs & X) => Promise<T>, requests: number, extra = {} as X) {
    const started = Date.now();
    const { page, seen } = await open('plain.html');
    const run = uniqueName('hand');
    // Cast to the plain args: Playwright's Unboxed<> does not resolve over a generic X.
    const result = await page.evaluate(send as (args: HandArgs) => Promise<T>, { writeKey: WRITE_KEY, orrery: orrery.url, run, ...extra });
    await waitFor(() => seen.sent.length === requests && seen.sent.every((s) => s.status !== undefined || s.failure), { what: `${requests} requests to finish` });
    return { seen, run, result, started };
  }

  /** A pixel whose data is the base64 (standard or URL-safe) of a track call. */
  async function expectPixelDelivered(alphabet: 'standard' | 'url') {
    const { seen, run, result, started } = await byHand(async ({ writeKey, orrery, run, alphabet }) => {
      const now = new Date().toISOString();
      // Standard base64 of this holds "+" and "/", as a pixel's data often does.
      const message = { writeKey, anonymousId: run, messageId: run, event: 'Email Opened', properties: { subject: '>>> ??? <<<' }, timestamp: now, sentAt: now };
      const json = JSON.stringify(message);
      const standard = btoa(json);
      const data = alphabet === 'standard' ? standard : standard.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
      const img = new (globalThis as any).Image();
      img.src = `${orrery}/v1/pixel/track?data=${data}`;
      const loaded = await img.decode().then(
        () => img.naturalWidth,
        (e: unknown) => String(e),
      );
      return { data, json, loaded };
    }, 1, { alphabet });
    if (alphabet === 'standard') expect(result.data).toMatch(/\+.*\/|\/.*\+/);
    const [pixel] = seen.sent;
    expect(pixel).toMatchObject({ method: 'GET', status: 200 });
    expect(result.loaded).toBe(1);
    expect(seen.problems).toEqual([]);
    const events = await expectDelivered([{ ...pixel!, body: result.json }], started);
    expect(events.get(run)).toMatchObject({ type: 'track', event: 'Email Opened', properties: { subject: '>>> ??? <<<' } });
  }

  it('a pixel, GET /v1/pixel/track?data=<URL-safe base64 JSON>', async () => {
    await expectPixelDelivered('url');
  });

  it('a pixel whose data is btoa() as is (standard base64: "+" and "/" unescaped in the query)', async () => {
    await expectPixelDelivered('standard');
  });

  it('navigator.sendBeacon of a string (text/plain, no preflight) to /v1/t, write key in the body', async () => {
    const { seen, run, started } = await byHand(async ({ writeKey, orrery, run }) => {
      const now = new Date().toISOString();
      return (globalThis as any).navigator.sendBeacon(`${orrery}/v1/t`, JSON.stringify({ writeKey, anonymousId: run, messageId: run, event: 'Left Page', timestamp: now, sentAt: now }));
    }, 1);
    expect(seen.sent[0]).toMatchObject({ method: 'POST', path: '/v1/t', headers: { 'content-type': 'text/plain;charset=UTF-8' }, status: 200 });
    // Playwright does not show a beacon's Origin; that Orrery saw it shows in its answer's CORS header.
    expect(seen.preflights()).toEqual([]);
    expectCleanDelivery(seen, siteOrigin);
    const events = await expectDelivered(seen.sent, started);
    expect(events.get(run)).toMatchObject({ type: 'track', event: 'Left Page' });
  });

  it('navigator.sendBeacon of an application/json Blob to /v1/batch (a preflight with credentials)', async () => {
    const { seen, run, started, result } = await byHand(async ({ writeKey, orrery, run }) => {
      const now = new Date().toISOString();
      const body = JSON.stringify({ writeKey, sentAt: now, batch: [{ type: 'track', anonymousId: run, messageId: run, event: 'Closed Tab', timestamp: now }] });
      return { queued: (globalThis as any).navigator.sendBeacon(`${orrery}/v1/batch`, new Blob([body], { type: 'application/json' })) as boolean, body };
    }, 1);
    expect(result.queued).toBe(true);
    expect(seen.sent[0]).toMatchObject({ method: 'POST', path: '/v1/batch', headers: { 'content-type': 'application/json' } });
    // The browser does not hand a Blob beacon's body to the page's request events: it is what the page sent.
    seen.sent[0]!.body ??= result.body;
    expectCleanDelivery(seen, siteOrigin);
    expectPreflightsPassed(seen, siteOrigin);
    const events = await expectDelivered(seen.sent, started);
    expect(events.get(run)).toMatchObject({ type: 'track', event: 'Closed Tab' });
  });

  it('a page on an origin not in allowedOrigins: the preflight passes, the request is refused without CORS headers, nothing arrives', async () => {
    const { page, seen } = await open('segment.html', otherOrigin);
    const run = uniqueName('denied');
    await page.evaluate(
      async ({ writeKey, apiHost, orrery, run }) => {
        const analytics = await (globalThis as any).loadAnalytics(writeKey, apiHost);
        // Not awaited: the SDK keeps retrying what the browser blocks.
        void analytics.track('Denied', { run });
        (globalThis as any).navigator.sendBeacon(`${orrery}/v1/t`, JSON.stringify({ writeKey, anonymousId: run, messageId: `${run}-beacon`, event: 'Denied Beacon' }));
      },
      { writeKey: WRITE_KEY, apiHost: apiHost(), orrery: orrery.url, run },
    );
    await waitFor(() => seen.blocked().some((b) => b.status !== undefined) && seen.answers().some((a) => a.status === 403 && !a.corsError), {
      what: 'the blocked call and the refused beacon',
    });

    const preflight = seen.preflights()[0]!;
    expect(preflight).toMatchObject({ path: '/v1/t', status: 204, requestHeaders: { origin: otherOrigin } });
    const blocked = seen.blocked().find((b) => b.status !== undefined)!;
    expect(blocked).toMatchObject({ path: '/v1/t', corsError: 'MissingAllowOriginHeader', status: 403 });
    expect(blocked.headers).not.toHaveProperty('access-control-allow-origin');
    // The beacon is no-cors: not blocked, but refused all the same, without CORS headers.
    const beacon = seen.answers().find((a) => a.status === 403 && !a.corsError)!;
    expect(beacon).toMatchObject({ path: '/v1/t' });
    expect(beacon.headers).not.toHaveProperty('access-control-allow-origin');

    const trackIds = seen.sent.filter((s) => s.path === '/v1/t' && s.headers.authorization).map((s) => JSON.parse(s.body!).messageId as string);
    expect(trackIds.length).toBeGreaterThan(0);
    await settle();
    expect(raw().filter((e) => trackIds.includes(e.messageId) || e.messageId === `${run}-beacon`)).toEqual([]);
  });
});
