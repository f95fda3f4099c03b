import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bus } from '../../core/bus/types.ts';
import { CALL_TYPES, decodeEnvelope, type Envelope } from '../../core/envelope.ts';
import { topicNames } from '../../core/topics.ts';
import { serviceEnv, uniqueName, waitFor } from '../helpers/index.ts';
import { startOrrery, type OrreryProcess } from '../helpers/process.ts';
import { recordTopics, testBus } from '../helpers/topics.ts';

/**
 * SDK compatibility matrix (#17), Python: the two Python tracking SDKs from PyPI,
 * unmodified, against `orrery start ingest` and real Kafka. Each runs in its own process
 * (test/integration/sdk/python_driver.py, in the cached venv of test/services/python-sdks)
 * with only its host and write key set (plus on_error, and max_retries=0 so that a refusal
 * fails at once instead of after minutes of backoff); gzip and batching stay its defaults.
 *
 * What each sends, read from the installed source (request.py, client.py):
 *
 * segment-analytics-python 2.4.0 (import segment.analytics; Client(write_key, host=…))
 * - POST {host}/v1/batch (host default https://api.segment.io; any path on it is kept,
 *   a trailing slash dropped), one request per up to 100 messages or 0.5 s.
 * - Content-Type: application/json; no Content-Encoding by default (gzip=False; with
 *   gzip=True: Content-Encoding: gzip); User-Agent: analytics-python/2.4.0; a retry adds
 *   X-Retry-Count: n.
 * - Authorization: Basic base64("<writeKey>:") (Bearer <token> when OAuth is configured).
 * - Body: { batch: [...], sentAt, writeKey }, the write key in the body too. Each message
 *   has type, messageId (uuid4), timestamp (ISO-8601 with +00:00, milliseconds), context
 *   with library { name: "analytics-python", version }, integrations {}, and explicit nulls
 *   for absent ids (anonymousId: null, category: null).
 * - Success is any 2xx; 4xx but 408/410/429/460 is final (on_error); 5xx and 429 retry,
 *   a Retry-After re-queues the batch without counting a retry.
 *
 * rudder-sdk-python 2.1.9 (import rudderstack.analytics; Client(write_key, host=<data plane URL>),
 * or the module-level rudder_analytics.dataPlaneUrl)
 * - POST {dataPlaneUrl}/v1/batch (no default host: it falls back to $TEST_DATA_PLANE_URL,
 *   read through python-dotenv, which loads a .env file found above the SDK's own path).
 * - Content-Type: application/json; Content-Encoding: gzip by default (gzip=True);
 *   User-Agent: analytics-python/2.1.9 (the same name as Segment's).
 * - Authorization: Basic base64("<writeKey>:") (requests' HTTPBasicAuth); no write key in
 *   the body.
 * - Body: { batch: [...], sentAt }; no _metadata, no rudderId. Each message adds
 *   channel: "server", integrations { All: true } when none were given, timestamp with
 *   microseconds and +00:00, context.library { name: "analytics-python", version } (again
 *   Segment's name), and identify's traits go to context.traits, not to the top level.
 * - Success is exactly 200 (any other 2xx counts as an error); other 4xx but 429 is final.
 */

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DRIVER = join(ROOT, 'test/integration/sdk/python_driver.py');
const SOURCE = 'py-sdks';

/** A message as the SDK queued it (the driver prints them back). */
type Sent = Record<string, unknown> & { type: string; messageId: string; timestamp: string; context: Record<string, unknown> };
interface DriverSummary {
  sdk: string;
  version: string;
  gzip: boolean;
  sent: Sent[];
  queued: boolean;
  posts: number;
  uploaded: number;
  errors: unknown[];
  logged_errors: string[];
}

/** What the SDK is expected to be: its default compression and its own library name. */
const SDKS = {
  segment: { gzip: false, library: 'analytics-python' },
  rudder: { gzip: true, library: 'analytics-python' },
} as const;

/** The message fields an envelope keeps as the SDK sent them (null meaning absent). */
const KEPT = ['type', 'userId', 'anonymousId', 'event', 'name', 'category', 'groupId', 'previousId', 'properties', 'traits', 'integrations', 'channel'];

describe('Python tracking SDKs against ingest (unmodified SDKs from PyPI, real Kafka)', () => {
  const writeKey = `wk_${uniqueName('py')}`;
  const topics = topicNames(uniqueName('py'));
  let venv: string;
  let orrery: OrreryProcess;
  let bus: Bus;
  /** Everything on this file's raw topic, from its beginning. */
  let recorded: Awaited<ReturnType<typeof recordTopics>>;
  /** The envelopes on the raw topic whose context.app.build is this run id. */
  const byRun = (run: string): Array<Envelope & { key: string | null }> =>
    recorded.messages.get(topics.raw)!.flatMap((m) => {
      const d = decodeEnvelope(m.value);
      const app = d.ok ? (d.envelope.context?.app as { build?: string } | undefined) : undefined;
      return d.ok && app?.build === run ? [{ ...d.envelope, key: m.key }] : [];
    });

  beforeAll(async () => {
    venv = (await exec('bash', [join(ROOT, 'test/services/python-sdks')], { maxBuffer: 1 << 24, timeout: 600_000 })).stdout.trim();
    const dir = await mkdtemp(join(tmpdir(), 'orrery-sdk-python-'));
    await writeFile(join(dir, 'orrery.yaml'), `sources:\n  - id: ${SOURCE}\n    writeKeys: [${writeKey}]\n`);
    orrery = await startOrrery(['start', 'ingest'], {
      ORRERY_CONFIG: join(dir, 'orrery.yaml'),
      INGEST_SPOOL_DIR: join(dir, 'spool'),
      KAFKA_BROKERS: serviceEnv('KAFKA_BROKERS'),
      KAFKA_TOPIC_PREFIX: topics.raw.split('.')[0]!,
      REDIS_URL: serviceEnv('REDIS_URL'),
    });
    bus = testBus('it-sdk-python');
    recorded = await recordTopics(bus, [topics.raw]);
  }, 660_000);

  afterAll(async () => {
    await orrery?.stop();
    await recorded?.sub.stop();
    await bus?.close();
  });

  /** Runs the driver; its exit code, its summary, and stderr for the failure message. */
  async function drive(sdk: keyof typeof SDKS, run: string): Promise<{ code: number; summary: DriverSummary | undefined; output: string }> {
    let code = 0;
    let stdout: string;
    let stderr: string;
    try {
      ({ stdout, stderr } = await exec(join(venv, 'bin', 'python'), [DRIVER, sdk, orrery.url, writeKey, run], { timeout: 60_000, maxBuffer: 1 << 24 }));
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      code = typeof e.code === 'number' ? e.code : -1;
      stdout = e.stdout ?? '';
      stderr = e.stderr ?? String(err);
    }
    let summary: DriverSummary | undefined;
    try {
      summary = JSON.parse(stdout) as DriverSummary;
    } catch {
      summary = undefined;
    }
    return { code, summary, output: `exit ${code}\nstdout: ${stdout}\nstderr: ${stderr}` };
  }

  it.each(Object.keys(SDKS) as Array<keyof typeof SDKS>)('%s: every call type arrives once on the raw topic, as sent and enriched', async (sdk) => {
    const run = uniqueName(`py-${sdk}`);
    const before = Date.now();
    const { code, summary, output } = await drive(sdk, run);
    const after = Date.now();

    // The SDK itself saw success: no error callback, no error logged, every post answered
    // with success at its first attempt.
    expect(summary, output).toBeDefined();
    expect({ code, errors: summary!.errors, logged: summary!.logged_errors }, output).toEqual({ code: 0, errors: [], logged: [] });
    expect(summary!.queued).toBe(true);
    expect(summary!.posts).toBeGreaterThan(0);
    expect(summary!.uploaded).toBe(summary!.posts);
    expect(summary!.gzip, 'the SDK default compression').toBe(SDKS[sdk].gzip);
    const sent = summary!.sent;
    expect(new Set(sent.map((m) => m.type))).toEqual(new Set(CALL_TYPES));

    await waitFor(() => byRun(run).length >= sent.length, { what: `the ${sent.length} ${sdk} events on the raw topic` });
    const events = byRun(run);
    // Exactly once: as many envelopes as messages sent, one a messageId.
    expect(events.map((e) => e.messageId).sort()).toEqual(sent.map((m) => m.messageId).sort());

    for (const m of sent) {
      const e = events.find((x) => x.messageId === m.messageId)!;
      const what = `${sdk} ${m.type} ${m.messageId}`;
      for (const field of KEPT) {
        if (m[field] !== null && m[field] !== undefined) expect(e[field as keyof Envelope], `${what}: ${field}`).toEqual(m[field]);
        else expect(e[field as keyof Envelope], `${what}: ${field}`).toBeUndefined();
      }
      expect(e.sourceId).toBe(SOURCE);
      expect(e.key).toBe(`${SOURCE}:${e.userId ?? e.anonymousId}`);
      // The SDK's context as sent (our context.app, its library), plus the client address.
      expect(e.context, what).toEqual({ ...m.context, ip: '127.0.0.1' });
      expect(e.context?.library, what).toEqual({ name: SDKS[sdk].library, version: summary!.version });
      const receivedAt = Date.parse(e.receivedAt);
      expect(receivedAt).toBeGreaterThanOrEqual(before - 1);
      expect(receivedAt).toBeLessThanOrEqual(after + 1);
      // The SDK's timestamp kept as originalTimestamp; timestamp corrected by sentAt.
      expect(e.originalTimestamp, what).toBe(new Date(Date.parse(m.timestamp)).toISOString());
      expect(e.sentAt, what).toBeDefined();
      expect(e.timestamp, what).toBe(new Date(receivedAt - (Date.parse(e.sentAt!) - Date.parse(e.originalTimestamp!))).toISOString());
    }
    // The run id where each call type carries it.
    for (const e of events) {
      if (e.type === 'identify') expect((sdk === 'rudder' ? e.context?.traits : e.traits) as object).toMatchObject({ run });
      else if (e.type === 'group') expect(e.traits).toMatchObject({ run });
      else if (e.type === 'alias') expect(e.userId).toBe(`${run}-u1`);
      else expect(e.properties).toMatchObject({ run });
    }
    if (sdk === 'rudder') expect(events.every((e) => e.channel === 'server')).toBe(true);
  });
});
