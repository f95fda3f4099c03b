/**
 * SDK compatibility (issue #17): Segment's Java library, com.segment.analytics.java:analytics
 * 3.5.4 from Maven Central (the newest 3.5.x published: 3.5.5 is tagged upstream but not on
 * Maven Central), unmodified, on Java 17, against `orrery start ingest` and real Kafka.
 *
 * What 3.5.4 sends (read from its source at tag analytics-parent-3.5.4 and the published jar,
 * and seen on the wire), when only `Analytics.builder(writeKey).endpoint("http://host:port")`
 * is set:
 * - POST http://host:port/v1/import/ : `endpoint()` appends "/v1/import/" (trailing slash
 *   included) to the host; `setUploadURL(url)` would take a full URL instead.
 * - Content-Type: application/json; charset=UTF-8, HTTP/1.1, Content-Length set.
 * - No Content-Encoding: the body is plain JSON. The library does not gzip; gzip is only a
 *   sample interceptor (analytics-sample's GzipRequestInterceptor) a user may add.
 *   OkHttp adds `Accept-Encoding: gzip` (for the response only).
 * - No Authorization header: since 3.4.0 the write key travels in the body as `writeKey`
 *   (3.5.5 adds Basic auth back beside it, and an X-Retry-Count header on retries).
 * - User-Agent: analytics-java/3.5.4.
 * - Body: {"batch":[...],"sentAt":ISO,"context":{"library":{"name":"analytics-java",
 *   "version":"3.5.4"},"instanceId":UUID},"sequence":N,"writeKey":KEY}. The library's
 *   context is batch-level only; each item carries the caller's own `context`,
 *   `integrations: {}`, `messageId` (the builder's, or a random UUID) and `timestamp`
 *   (ISO-8601 UTC with milliseconds, set when the message is built); no item has `sentAt`.
 * - Batching: 250 messages or 10 s, whichever first, or flush(); up to ~500 KB a batch and
 *   32 KB a message. Retries: up to 3 after the first try, on 5xx, 429 and I/O errors, with
 *   a jittered backoff from 15 s (capped at 1 h; no Retry-After support); any other non-2xx
 *   fails the batch's callbacks at once, never retried.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniqueName, waitFor } from '../helpers/index.ts';
import { startIngestOnKafka, type IngestOnKafka } from '../helpers/ingest.ts';
import type { OrreryProcess } from '../helpers/process.ts';

const run = promisify(execFile);
const JAVA_SDK = fileURLToPath(new URL('../services/java-sdk', import.meta.url));

/** What JavaDriver prints on stdout. */
interface DriverReport {
  ok: boolean;
  sent: Array<{ type: string; messageId: string; userId: string | null; anonymousId: string | null }>;
  succeeded: string[];
  failures: Array<{ messageId: string; error: string }>;
  allCalledBack: boolean;
  uploads: Record<string, number>;
  retries: number;
  log: string[];
}

/** Runs the driver; its exit code and report, whether it passed or not. */
async function runDriver(java: string, classpath: string, args: string[]): Promise<{ code: number; report: DriverReport; stderr: string }> {
  let out: { stdout: string; stderr: string; code: number };
  try {
    const r = await run(java, ['-cp', classpath, 'JavaDriver', ...args], { timeout: 120_000 });
    out = { ...r, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number | string };
    if (typeof e.code !== 'number') throw err;
    out = { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: e.code };
  }
  const line = out.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return { code: out.code, report: JSON.parse(line) as DriverReport, stderr: out.stderr };
  } catch {
    throw new Error(`JavaDriver exited ${out.code} without a report:\n${out.stdout}\n${out.stderr}`);
  }
}

describe('Segment analytics-java (Maven Central) against ingest', () => {
  const writeKey = `wk_${uniqueName('java')}`;
  const env: Record<string, string> = {};
  let ingest: IngestOnKafka;
  let orrery: OrreryProcess;
  const byRun = (run: string) => ingest.envelopes().filter((e) => [e.userId, e.anonymousId].some((id) => id?.startsWith(`${run}-`)));

  beforeAll(async () => {
    // Resolves and compiles once (cached under ~/.cache/orrery/java-sdk): the first run
    // downloads the jars with Maven.
    const { stdout } = await run('bash', [JAVA_SDK], { timeout: 600_000 });
    for (const line of stdout.split('\n')) {
      const m = /^export ([A-Z_]+)=(.*)$/.exec(line.trim());
      if (m) env[m[1]!] = m[2]!.replace(/^'|'$/g, '');
    }
    expect(Object.keys(env).sort()).toEqual(['JAVA_SDK_CLASSPATH', 'JAVA_SDK_JAVA', 'JAVA_SDK_VERSION']);
    ingest = await startIngestOnKafka('it-sdk-java', `sources:\n  - id: it-java\n    writeKeys: [${writeKey}]\n`);
    orrery = ingest.orrery;
  }, 660_000);

  afterAll(async () => {
    await ingest?.stop();
  });

  it('every call type arrives on the raw topic exactly once, enriched, with no error callback and no retry', async () => {
    const run = uniqueName('java');
    const started = Date.now();
    const { code, report, stderr } = await runDriver(env.JAVA_SDK_JAVA!, env.JAVA_SDK_CLASSPATH!, [orrery.url, writeKey, run]);
    // On failure: the library's log (request and answer lines) and ingest's last logs.
    expect({ code, failures: report.failures, retries: report.retries, uploads: report.uploads }, `${stderr}\ningest: ${JSON.stringify(orrery.logs.slice(-10))}`).toEqual({
      code: 0,
      failures: [],
      retries: 0,
      uploads: { '1': 1 },
    });
    expect(report).toMatchObject({ ok: true, allCalledBack: true });
    // Its default path, on the host it was given.
    expect(report.log.some((l) => l.startsWith(`--> POST ${orrery.url}/v1/import/ (`))).toBe(true);
    expect(report.log.some((l) => l.startsWith(`<-- 200 OK ${orrery.url}/v1/import/`))).toBe(true);

    const ids = ['identify', 'track', 'page', 'screen', 'group', 'alias', 'backdated'].map((n) => `${run}-${n}`);
    expect(report.sent.map((s) => s.messageId)).toEqual(ids);
    expect([...report.succeeded].sort()).toEqual([...ids].sort());

    // Every event, then one marker per key sent after the driver finished: Kafka keeps a
    // partition in order, so a duplicate produced for either key would be on the topic
    // before its marker.
    await waitFor(() => new Set(byRun(run).map((e) => e.messageId)).size === ids.length, { what: 'the Java SDK events on the raw topic' });
    for (const who of [{ userId: `${run}-u1` }, { anonymousId: `${run}-a1` }]) {
      const res = await fetch(`${orrery.url}/v1/track`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Basic ${btoa(`${writeKey}:`)}` },
        body: JSON.stringify({ ...who, event: 'Marker', messageId: `${run}-marker-${Object.keys(who)[0]}` }),
      });
      expect(res.status).toBe(200);
    }
    await waitFor(() => byRun(run).filter((e) => e.event === 'Marker').length === 2, { what: 'the markers' });
    const events = byRun(run).filter((e) => e.event !== 'Marker');
    expect(events.map((e) => e.messageId).sort()).toEqual([...ids].sort());

    const byId = new Map(events.map((e) => [e.messageId.slice(run.length + 1), e]));
    const user = `${run}-u1`;
    const anon = `${run}-a1`;
    expect(byId.get('identify')).toMatchObject({ type: 'identify', userId: user, traits: { run, plan: 'pro' }, key: `it-java:${user}` });
    expect(byId.get('track')).toMatchObject({ type: 'track', userId: user, event: 'Order Completed', properties: { run, revenue: 9.5 } });
    expect(byId.get('page')).toMatchObject({ type: 'page', anonymousId: anon, name: 'Home', properties: { run }, key: `it-java:${anon}` });
    expect(byId.get('screen')).toMatchObject({ type: 'screen', userId: user, name: 'Cart', properties: { run } });
    expect(byId.get('group')).toMatchObject({ type: 'group', userId: user, groupId: `${run}-acme`, traits: { run } });
    expect(byId.get('alias')).toMatchObject({ type: 'alias', userId: user, previousId: anon });
    expect(byId.get('backdated')).toMatchObject({ type: 'track', anonymousId: anon, event: 'Backdated', properties: { run } });

    for (const e of events) {
      expect(e.sourceId).toBe('it-java');
      expect(e.v).toBe(1);
      // The caller's context, with the library's batch-level context merged under it.
      expect(e.context).toMatchObject({
        orreryTest: { run, driver: 'JavaDriver' },
        library: { name: 'analytics-java', version: env.JAVA_SDK_VERSION },
        ip: '127.0.0.1',
      });
      expect(e.context?.instanceId).toMatch(/^[0-9a-f-]{36}$/);
      expect(e).not.toHaveProperty('writeKey');
      const receivedAt = Date.parse(e.receivedAt);
      expect(receivedAt).toBeGreaterThanOrEqual(started - 1000);
      expect(receivedAt).toBeLessThanOrEqual(Date.now());
      // timestamp = receivedAt − (sentAt − originalTimestamp), from the batch's sentAt.
      expect(e.sentAt).toBeDefined();
      expect(e.originalTimestamp).toBeDefined();
      expect(Date.parse(e.timestamp)).toBe(receivedAt - (Date.parse(e.sentAt!) - Date.parse(e.originalTimestamp!)));
      expect(Date.parse(e.sentAt!)).toBeGreaterThanOrEqual(Date.parse(e.originalTimestamp!));
    }
    // The back-dated event keeps its hour: the correction moves it by the request's latency only.
    const backdated = byId.get('backdated')!;
    const hourAgo = Date.parse(backdated.receivedAt) - 3_600_000;
    expect(Math.abs(Date.parse(backdated.originalTimestamp!) - hourAgo)).toBeLessThan(60_000);
    expect(Math.abs(Date.parse(backdated.timestamp) - Date.parse(backdated.originalTimestamp!))).toBeLessThan(60_000);
  });
});
