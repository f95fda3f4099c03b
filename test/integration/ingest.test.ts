import { Analytics } from '@segment/analytics-node';
import RudderAnalytics from '@rudderstack/rudder-sdk-node';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { brotliCompressSync, constants as zlibConstants, createBrotliCompress, createGzip, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceCtl, uniqueName, waitFor } from '../helpers/index.ts';
import { startIngestOnKafka, type IngestOnKafka } from '../helpers/ingest.ts';
import type { OrreryProcess } from '../helpers/process.ts';

type AxiosLike = { status: number; config: { headers: Record<string, unknown> } };

/** `total` bytes of zeros through `compressor`: a compression bomb. */
async function bomb(total: number, compressor: () => NodeJS.ReadWriteStream): Promise<Buffer> {
  const chunk = Buffer.alloc(1 << 20);
  let left = total;
  const zeros = Readable.from(
    (function* () {
      for (; left > 0; left -= chunk.length) yield left >= chunk.length ? chunk : chunk.subarray(0, left);
    })(),
  );
  return buffer(zeros.pipe(compressor()));
}

/**
 * Ingest as a user runs it (`orrery start ingest`), against real Kafka, with real SDK
 * traffic. Each test tags its events with a unique run id and looks for those on the raw
 * topic, which other tests share.
 */
describe('ingest against real Kafka', () => {
  const writeKey = `wk_${uniqueName('it')}`;
  // A topic prefix of its own: this file's raw topic holds only its events.
  let ingest: IngestOnKafka;
  let orrery: OrreryProcess;
  const byRun = (run: string) => ingest.envelopes().filter((e) => e.properties?.run === run);

  beforeAll(async () => {
    ingest = await startIngestOnKafka('it-ingest', `sources:\n  - id: it-web\n    writeKeys: [${writeKey}]\n    allowedOrigins: ['*']\n`, {
      INGEST_PRODUCE_TIMEOUT_MS: '1000',
    });
    orrery = ingest.orrery;
  });

  afterAll(async () => {
    await serviceCtl('up', 'kafka');
    await ingest?.stop();
  });

  it('logs which adapters are in use at start', () => {
    const messages = orrery.logs.map((l) => String(l.msg));
    expect(messages).toContain('bus: Apache Kafka (client: @platformatic/kafka; set KAFKA_CLIENT to change)');
    expect(messages).toContain('cache/limiter: Redis');
    expect(JSON.stringify(orrery.logs)).not.toContain(writeKey);
    // No warning at start: kafkajs's TimeoutNegativeWarning on Node >= 23 is fixed at its
    // cause (core/bus/kafkajs-negative-timeout.ts).
    expect(orrery.stderr()).not.toMatch(/Warning/);
  });

  it('events from @segment/analytics-node arrive on the raw topic with the right fields and key', async () => {
    const run = uniqueName('sdk');
    const analytics = new Analytics({ writeKey, host: orrery.url, flushAt: 5, flushInterval: 50, maxRetries: 1 });
    const errors: unknown[] = [];
    analytics.on('error', (e) => errors.push(e));
    analytics.identify({ userId: `${run}-u1`, traits: { plan: 'pro' }, context: { app: { name: 'it' } } });
    analytics.track({ userId: `${run}-u1`, event: 'Order Completed', properties: { run, revenue: 9.5 } });
    analytics.page({ anonymousId: `${run}-a1`, name: 'Home', properties: { run } });
    analytics.screen({ userId: `${run}-u1`, name: 'Cart', properties: { run } });
    analytics.group({ userId: `${run}-u1`, groupId: 'acme', traits: { run } });
    analytics.alias({ userId: `${run}-u1`, previousId: `${run}-a1` });
    analytics.track({ anonymousId: `${run}-a1`, event: 'Clicked', properties: { run } });
    await analytics.closeAndFlush({ timeout: 10_000 });
    expect(errors).toEqual([]);

    await waitFor(() => byRun(run).length === 4, { what: 'the SDK events with properties.run' });
    const events = byRun(run);
    const order = events.find((e) => e.event === 'Order Completed')!;
    expect(order).toMatchObject({
      v: 1,
      sourceId: 'it-web',
      type: 'track',
      userId: `${run}-u1`,
      key: `it-web:${run}-u1`,
      properties: { run, revenue: 9.5 },
    });
    expect(order.messageId).toMatch(/.+/);
    expect(order.context?.library).toMatchObject({ name: '@segment/analytics-node' });
    expect(order.context?.ip).toBe('127.0.0.1');
    expect(Date.parse(order.receivedAt)).toBeGreaterThan(Date.now() - 60_000);
    expect(order.sentAt ?? order.originalTimestamp).toBeDefined();
    const clicked = events.find((e) => e.event === 'Clicked')!;
    expect(clicked.key).toBe(`it-web:${run}-a1`);
    // One user's events share a partition.
    const partitions = new Set(events.filter((e) => e.userId === `${run}-u1`).map((e) => e.partition));
    expect(partitions.size).toBe(1);
  });

  it('events from @rudderstack/rudder-sdk-node, with its defaults (gzip, a form content type), arrive once each with their fields', async () => {
    // What it sends (3.1.1, cjs/index.js): POST <dataPlaneUrl>/v1/batch through axios, the
    // JSON gzipped with Content-Encoding: gzip (gzip defaults to true) and, since axios sees
    // a Buffer, Content-Type application/x-www-form-urlencoded; Basic auth with the write
    // key; {batch, timestamp, sentAt}, each message with channel "server", rudderId-free
    // context.library { name: 'analytics-node', version }.
    const run = uniqueName('rudder');
    const requests: Array<{ status: number; encoding: string | undefined; type: string | undefined }> = [];
    const errors: unknown[] = [];
    const client = new RudderAnalytics(writeKey, {
      dataPlaneUrl: orrery.url,
      flushAt: 4,
      flushInterval: 50,
      retryCount: 0,
      errorHandler: (err: unknown) => errors.push(err),
    });
    const axios = (client as unknown as { axiosInstance: { interceptors: { response: { use(ok: (r: AxiosLike) => AxiosLike, bad: (e: { response?: AxiosLike }) => Promise<never>): void } } } }).axiosInstance;
    const seen = (r: AxiosLike) => requests.push({ status: r.status, encoding: r.config.headers['Content-Encoding'] as string | undefined, type: r.config.headers['Content-Type'] as string | undefined });
    axios.interceptors.response.use(
      (r) => (seen(r), r),
      (e) => (e.response && seen(e.response), Promise.reject(e)),
    );
    // Each call's callback reports its batch's outcome: all must come back without error.
    const outcomes: Array<Promise<unknown>> = [];
    const cb = () => {
      let done!: (err?: unknown) => void;
      outcomes.push(new Promise((resolve) => (done = resolve)));
      return (err?: unknown) => done(err);
    };
    client.identify({ userId: `${run}-u1`, traits: { plan: 'pro', run }, context: { app: { name: 'it' } } }, cb());
    client.track({ userId: `${run}-u1`, event: 'Order Completed', properties: { run, revenue: 9.5 } }, cb());
    client.page({ anonymousId: `${run}-a1`, name: 'Home', properties: { run } }, cb());
    client.screen({ userId: `${run}-u1`, name: 'Cart', properties: { run } }, cb());
    client.group({ userId: `${run}-u1`, groupId: 'acme', traits: { run } }, cb());
    client.alias({ userId: `${run}-u1`, previousId: `${run}-a1` }, cb());
    client.track({ anonymousId: `${run}-a1`, event: 'Clicked', properties: { run } }, cb());
    const sent = outcomes.length;
    await client.flush();
    expect(await Promise.all(outcomes)).toEqual(Array.from({ length: sent }, () => undefined));
    expect(errors).toEqual([]);
    expect(requests.length).toBeGreaterThan(0);
    expect(requests.every((r) => r.status === 200 && r.encoding === 'gzip')).toBe(true);
    expect(requests.every((r) => r.type?.startsWith('application/x-www-form-urlencoded'))).toBe(true);

    // identify, group and alias carry the run in traits or ids only: match by user.
    const ours = () => ingest.envelopes().filter((e) => String(e.userId ?? e.anonymousId ?? '').startsWith(run));
    await waitFor(() => ours().length >= sent, { what: 'every RudderStack SDK call on the raw topic' });
    await new Promise((r) => setTimeout(r, 300));
    const events = ours();
    expect(events.map((e) => e.type).sort()).toEqual(['alias', 'group', 'identify', 'page', 'screen', 'track', 'track']);
    expect(new Set(events.map((e) => e.messageId)).size).toBe(sent);
    expect(events).toHaveLength(sent);
    for (const e of events) {
      expect(e).toMatchObject({ sourceId: 'it-web', channel: 'server' });
      expect(e.context?.library).toMatchObject({ name: 'analytics-node' });
      expect(Date.parse(e.receivedAt)).toBeGreaterThan(Date.now() - 60_000);
      expect(Math.abs(Date.parse(e.timestamp!) - Date.now())).toBeLessThan(60_000);
    }
    expect(events.find((e) => e.type === 'identify')?.context?.app).toEqual({ name: 'it' });
    expect(events.find((e) => e.type === 'track' && e.event === 'Order Completed')?.properties).toEqual({ run, revenue: 9.5 });
  });

  it('compressed bodies are inflated under the same limits, and a bomb is refused at the limit with bounded memory: 1 GiB of brotli, 490 MiB of gzip (the most that fits the 500 KB limit)', async () => {
    const auth = { authorization: `Basic ${btoa(`${writeKey}:`)}` };
    const run = uniqueName('coded');
    const batch = (n: number) => JSON.stringify({ batch: [{ type: 'track', event: 'Coded', userId: `${run}-u`, messageId: `${run}-${n}`, properties: { run } }] });
    const codings: Array<[string, (b: Buffer) => Buffer]> = [
      ['gzip', (b) => gzipSync(b)],
      ['x-gzip', (b) => gzipSync(b)],
      ['deflate', (b) => deflateSync(b)],
      ['br', (b) => brotliCompressSync(b)],
      ['GZIP', (b) => gzipSync(b)],
      ['identity', (b) => b],
    ];
    for (const [i, [coding, encode]] of codings.entries()) {
      const res = await fetch(`${orrery.url}/v1/batch`, { method: 'POST', headers: { ...auth, 'content-encoding': coding }, body: encode(Buffer.from(batch(i))) });
      expect([coding, res.status]).toEqual([coding, 200]);
    }
    await waitFor(() => byRun(run).length === codings.length, { what: 'one event per coding' });

    const refused = async (headers: Record<string, string>, body: Buffer) => {
      const res = await fetch(`${orrery.url}/v1/batch`, { method: 'POST', headers: { ...auth, ...headers }, body });
      return [res.status, ((await res.json()) as { code: string }).code];
    };
    expect(await refused({ 'content-encoding': 'gzip' }, Buffer.from('not gzip at all'))).toEqual([400, 'invalid_compression']);
    expect(await refused({ 'content-encoding': 'gzip' }, gzipSync(Buffer.from(batch(99))).subarray(0, 20))).toEqual([400, 'invalid_compression']);
    expect(await refused({ 'content-encoding': 'zstd' }, Buffer.from(batch(98)))).toEqual([415, 'unsupported_encoding']);
    // Inflating past 500 KB is over the batch limit, however small the compressed body.
    expect(await refused({ 'content-encoding': 'gzip' }, gzipSync(Buffer.alloc(600 * 1024, 0x20)))).toEqual([400, 'payload_too_large']);

    const peak = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${orrery.child.pid}/status`, 'utf8'))![1]) / 1024;
    const brBomb = await bomb(1 << 30, () => createBrotliCompress({ params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 4 } }));
    const gzBomb = await bomb(490 << 20, () => createGzip({ level: 9 }));
    expect(brBomb.length).toBeLessThan(64 * 1024);
    expect(gzBomb.length).toBeLessThan(500 * 1024);
    const before = peak();
    for (let i = 0; i < 3; i++) {
      expect(await refused({ 'content-encoding': 'br' }, brBomb)).toEqual([400, 'payload_too_large']);
      expect(await refused({ 'content-encoding': 'gzip' }, gzBomb)).toEqual([400, 'payload_too_large']);
    }
    const after = peak();
    console.info(`compression bombs: 1 GiB in ${brBomb.length} B of brotli and 490 MiB in ${gzBomb.length} B of gzip, 3 each: peak RSS ${before.toFixed(1)} → ${after.toFixed(1)} MiB`);
    // Inflating either in full would add 490 MiB or more; refused at the limit, a few MiB.
    expect(after - before).toBeLessThan(48);
    expect((await fetch(`${orrery.url}/healthz`)).status).toBe(200);
  });

  it('a browser-style text/plain batch with the key in the body is accepted', async () => {
    const run = uniqueName('browser');
    const res = await fetch(`${orrery.url}/v1/b`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', origin: 'https://app.example' },
      body: JSON.stringify({
        writeKey,
        sentAt: new Date().toISOString(),
        batch: [
          { type: 'page', anonymousId: `${run}-a`, name: 'Landing', properties: { run }, timestamp: new Date().toISOString() },
          { type: 'track', anonymousId: `${run}-a`, event: 'CTA Clicked', properties: { run } },
        ],
      }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example');
    await waitFor(() => byRun(run).length === 2, { what: 'the browser batch' });
    expect(byRun(run).map((e) => e.type)).toEqual(['page', 'track']);
  });

  it('Kafka stops mid-stream: events spool, Kafka returns, every acknowledged event reaches the topic', async () => {
    const run = uniqueName('outage');
    const acked: string[] = [];
    const failed: number[] = [];
    let sent = 0;
    let degradedSeen = false;
    let kafkaStopped = false;

    async function send(): Promise<void> {
      const id = `${run}-${sent++}`;
      const res = await fetch(`${orrery.url}/v1/track`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Basic ${btoa(`${writeKey}:`)}` },
        body: JSON.stringify({ userId: `${run}-u${sent % 5}`, event: 'Tick', messageId: id, properties: { run } }),
      });
      if (res.status === 200) acked.push(id);
      else failed.push(res.status);
    }

    // Before, during and after the outage: 4 concurrent clients.
    const phase = async (n: number) => {
      for (let i = 0; i < n; i += 4) await Promise.all([send(), send(), send(), send()]);
    };
    await phase(100);
    await serviceCtl('down', 'kafka');
    kafkaStopped = true;
    await phase(100);
    const ready = (await (await fetch(`${orrery.url}/readyz`)).json()) as { status: string };
    degradedSeen = ready.status === 'degraded';
    await serviceCtl('up', 'kafka');
    await phase(40);

    expect(kafkaStopped).toBe(true);
    expect(degradedSeen).toBe(true);
    expect(failed).toEqual([]);
    expect(acked.length).toBe(sent);

    await waitFor(() => new Set(byRun(run).map((e) => e.messageId)).size === acked.length, {
      timeoutMs: 120_000,
      intervalMs: 250,
      what: `all ${acked.length} acknowledged events on the raw topic`,
    });
    const onTopic = new Set(byRun(run).map((e) => e.messageId));
    const lost = acked.filter((id) => !onTopic.has(id));
    expect(lost).toEqual([]);
    const copies = byRun(run).length;
    console.info(`ingest outage: ${sent} sent, ${acked.length} acknowledged, ${failed.length} refused, ${lost.length} lost, ${copies - onTopic.size} duplicates on the topic`);
    // Per-user order survives the spool: each user's ticks are in send order.
    for (let u = 0; u < 5; u++) {
      const seq = byRun(run)
        .filter((e) => e.userId === `${run}-u${u}`)
        .map((e) => Number(e.messageId.split('-').at(-1)));
      const firstSeen = seq.filter((n, i) => seq.indexOf(n) === i);
      expect(firstSeen).toEqual([...firstSeen].sort((a, b) => a - b));
    }
    await waitFor(async () => ((await (await fetch(`${orrery.url}/readyz`)).json()) as { status: string }).status === 'ok', {
      timeoutMs: 60_000,
      what: 'readiness back to ok',
    });
  });

  it('exposes Prometheus metrics for accepted events, rejections and spool depth', async () => {
    await fetch(`${orrery.url}/v1/track`, { method: 'POST', body: '{bad json', headers: { authorization: `Basic ${btoa(`${writeKey}:`)}` } });
    const text = await (await fetch(`${orrery.url}/metrics`)).text();
    expect(text).toMatch(/orrery_ingest_events_accepted_total\{source="it-web"[^}]*\} \d+/);
    expect(text).toMatch(/orrery_ingest_requests_rejected_total\{code="invalid_json"[^}]*\} 1/);
    expect(text).toContain('orrery_ingest_spool_depth');
    expect(text).toContain('orrery_ingest_handoff_seconds_bucket');
  });

  it('drains and exits 0 on SIGTERM', async () => {
    const code = await orrery.stop();
    expect(code).toBe(0);
    expect(orrery.logs.map((l) => l.msg)).toContain('stopped cleanly');
  });
});
