import { Analytics } from '@segment/analytics-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceCtl, uniqueName, waitFor } from '../helpers/index.ts';
import { startIngestOnKafka, type IngestOnKafka } from '../helpers/ingest.ts';
import type { OrreryProcess } from '../helpers/process.ts';

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
    expect(messages).toContain('bus: Apache Kafka');
    expect(messages).toContain('cache/limiter: Redis');
    expect(JSON.stringify(orrery.logs)).not.toContain(writeKey);
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
