import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniqueName, waitFor } from '../helpers/index.ts';
import { startIngestOnKafka, type IngestOnKafka } from '../helpers/ingest.ts';

/**
 * The SDK matrix's mobile row (#17): a batch as Segment's Android and iOS SDKs send it,
 * from recorded fixtures (test/fixtures/mobile/), since neither SDK runs here.
 *
 * analytics-kotlin (github.com/segmentio/analytics-kotlin at a14649b, LIBRARY_VERSION
 * 1.24.1 in core/Constants.kt; gradle says 1.25.0): HTTPClient.kt's RequestFactory.upload
 * POSTs to `https://<apiHost>/b` (apiHost `api.segment.io/v1`, so /v1/b) with
 * `Content-Type: text/plain`, `Content-Encoding: gzip`, `User-Agent:
 * analytics-kotlin/<version>` and chunked streaming (no Content-Length); no Authorization:
 * the write key is in the body. StorageImpl.kt writes the body: `{"batch":[` + events +
 * `],"sentAt":"…","writeKey":"…"}`; events are encoded with `encodeDefaults = true`
 * (EventPipeline.kt), so an anonymous event carries `"userId":""` and every event
 * `"_metadata":{"bundled":[],"unbundled":[],"bundledIds":[]}` and `"integrations":{}`.
 * The context (AndroidContextPlugin.kt, ContextPlugin.kt): app, device, os, screen,
 * network, locale, userAgent, timezone, library {name: analytics-kotlin}, instanceId.
 *
 * analytics-swift (github.com/segmentio/analytics-swift at c9a0d63, 1.9.4 in Version.swift):
 * HTTPClient.swift POSTs the batch file to `<apiHost>/b` with `Content-Type:
 * application/json; charset=utf-8`, `User-Agent: analytics-ios/<version>` and
 * `Accept-Encoding: gzip`; no Authorization and no compression. DirectoryStore.swift
 * writes the file a line at a time: `{ "batch": [`, one event per line, comma-separated,
 * then `],"sentAt":"…","writeKey":"…"}`. Context.swift: library {name: analytics-swift},
 * app, device, os, screen, locale, timezone, network, instanceId; events carry
 * `metrics: []` and `_metadata`, and no userId while anonymous.
 */
const FIXTURES = new URL('../fixtures/mobile/', import.meta.url);
const CALLS = ['alias', 'group', 'identify', 'screen', 'track'];

/** A fixture with this run's ids, a `sentAt` of now, and timestamps 2 s before it. */
function fixture(file: string, run: string, writeKey: string, sentAt: number): string {
  return readFileSync(new URL(file, FIXTURES), 'utf8')
    .replaceAll('{{run}}', run)
    .replaceAll('{{writeKey}}', writeKey)
    .replaceAll('{{sentAt}}', new Date(sentAt).toISOString())
    .replaceAll('{{timestamp}}', new Date(sentAt - 2_000).toISOString());
}

/** A POST with exactly these headers: chunked when no Content-Length is given, as HttpURLConnection streams. */
function post(url: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: text }));
    });
    req.on('error', reject);
    if (headers['content-length'] === undefined) {
      // Several chunks, as a streamed GZIPOutputStream writes them.
      for (let i = 0; i < body.length; i += 512) req.write(body.subarray(i, i + 512));
    } else req.write(body);
    req.end();
  });
}

describe('SDK matrix: a mobile batch as Segment\'s Android and iOS SDKs send it', () => {
  const writeKey = `wk_${uniqueName('mobile')}`;
  let ingest: IngestOnKafka;
  beforeAll(async () => {
    ingest = await startIngestOnKafka('it-mobile', `sources:\n  - id: it-app\n    writeKeys: [${writeKey}]\n`);
  });
  afterAll(async () => {
    await ingest?.stop();
  });

  const rows = [
    {
      sdk: 'analytics-kotlin 1.24.1 (Android)',
      file: 'analytics-kotlin-1.24.1.txt',
      platform: 'android',
      headers: (body: Buffer) => (void body, { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'user-agent': 'analytics-kotlin/1.24.1' }),
      encode: (text: string) => gzipSync(text),
      library: 'analytics-kotlin',
    },
    {
      sdk: 'analytics-swift 1.9.4 (iOS)',
      file: 'analytics-swift-1.9.4.txt',
      platform: 'ios',
      headers: (body: Buffer) => ({ 'content-type': 'application/json; charset=utf-8', 'user-agent': 'analytics-ios/1.9.4', 'accept-encoding': 'gzip', 'content-length': String(body.length) }),
      encode: (text: string) => Buffer.from(text),
      library: 'analytics-swift',
    },
  ];

  for (const row of rows) {
    it(`${row.sdk}: every call once, its context, ids and _metadata unchanged, the timestamp corrected`, async () => {
      const run = uniqueName('m');
      const sentAt = Date.now() - 60_000; // a phone clock a minute behind
      const text = fixture(row.file, run, writeKey, sentAt);
      const sent = (JSON.parse(text) as { batch: Array<Record<string, unknown>> }).batch;
      const body = row.encode(text);
      const res = await post(`${ingest.orrery.url}/v1/b`, row.headers(body), body);
      expect(res).toEqual({ status: 200, body: '{"success":true}' });

      const ours = () => ingest.envelopes().filter((e) => e.messageId.startsWith(`${run}-`));
      await waitFor(() => ours().length >= sent.length, { what: `the ${row.sdk} batch on the raw topic` });
      await new Promise((r) => setTimeout(r, 300));
      const events = ours();
      expect(events.map((e) => e.type).sort()).toEqual(CALLS);
      expect(events.map((e) => e.messageId).sort()).toEqual(sent.map((e) => e.messageId as string).sort());
      for (const e of events) {
        const original = sent.find((s) => s.messageId === e.messageId)!;
        expect(e.sourceId).toBe('it-app');
        // Everything the SDK put in the context arrives as it was; ingest adds the address.
        expect(e.context).toEqual({ ...(original.context as object), ip: '127.0.0.1' });
        expect(e.context?.library).toMatchObject({ name: row.library });
        expect(e._metadata).toEqual({ bundled: [], unbundled: [], bundledIds: [] });
        expect(e.anonymousId).toBe(`${run}-anon-${row.platform}`);
        // Kotlin sends "userId": "" while anonymous: an empty id is no id.
        expect(e.userId).toBe(original.userId ? original.userId : undefined);
        expect(e.key).toBe(`it-app:${e.userId ?? e.anonymousId}`);
        expect(Date.parse(e.receivedAt)).toBeGreaterThan(Date.now() - 60_000);
        // The phone's clock is a minute slow: the timestamp is moved by sentAt's skew, so
        // it lands 2 s before receivedAt, and the client's time is kept as originalTimestamp.
        expect(Date.parse(e.receivedAt) - Date.parse(e.timestamp!)).toBeGreaterThanOrEqual(1_500);
        expect(Date.parse(e.receivedAt) - Date.parse(e.timestamp!)).toBeLessThanOrEqual(3_000);
        expect(e.originalTimestamp).toBe(new Date(sentAt - 2_000).toISOString());
      }
      const track = events.find((e) => e.type === 'track')!;
      expect(track.properties).toEqual({ run, plan: 'pro' });
      expect(events.find((e) => e.type === 'screen')?.name).toBe('Checkout');
      expect(events.find((e) => e.type === 'alias')?.previousId).toBe(`${run}-anon-${row.platform}`);
    });
  }
});
