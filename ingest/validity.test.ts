import fc from 'fast-check';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testLogger, waitFor } from '../test/helpers/index.ts';
import { createEmbeddedBus } from '../core/bus/embedded.ts';
import type { Bus, IncomingMessage, Subscription } from '../core/bus/types.ts';
import { MAX_JSON_DEPTH, TIMESTAMP_RANGE, type Envelope } from '../core/envelope.ts';
import { topicNames } from '../core/topics.ts';
import { parse } from '../router/steps/parse.ts';
import { createIngestApp } from './app.ts';
import { createConfigSourceResolver } from './sources.ts';

/**
 * One rule for what is valid: every body ingest answers 2xx for becomes envelopes that the
 * router's own parse step accepts (issue #15), and no body makes ingest answer 5xx (issue
 * #16). The real app hands off to a real embedded bus; what lands on the raw topic is read
 * back by a consumer and parsed with the router's step, as the router would.
 */

const KEY = 'wk_validity_1234567890';
const RECEIVED = Date.parse('2026-11-27T12:00:00.000Z');
const topic = topicNames('validity').raw;

let dir: string;
let bus: Bus;
let sub: Subscription;
const landed: IncomingMessage[] = [];
let app: Awaited<ReturnType<typeof buildApp>>;

async function buildApp() {
  const sources = await createConfigSourceResolver([{ id: 'web', writeKeys: [KEY], writeKeyHashes: [], enabled: true, allowedOrigins: ['*'] }]);
  return createIngestApp({
    sources,
    handoff: {
      async send(records) {
        await bus.produce(topic, records);
        return 'bus';
      },
    },
    now: () => RECEIVED,
    clientIp: () => '203.0.113.7',
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'orrery-validity-'));
  bus = await createEmbeddedBus({ dir, logger: testLogger() });
  await bus.ensureTopics([{ topic, numPartitions: 1, replicationFactor: 1 }]);
  sub = await bus.consume({
    group: 'validity',
    topics: [topic],
    fromBeginning: true,
    handle: async (batch) => {
      landed.push(...batch.messages);
    },
  });
  await sub.ready;
  app = await buildApp();
});

afterAll(async () => {
  await sub?.stop();
  await bus?.close();
  await rm(dir, { recursive: true, force: true });
});

interface Sent {
  status: number;
  body: Record<string, unknown>;
  /** What the router's parse step made of each record this request put on the bus. */
  parsed: ReturnType<typeof parse>[];
}

/** Posts a body and, on a 2xx, waits for its records on the bus and parses them as the router does. */
async function send(path: string, body: unknown): Promise<Sent> {
  const before = landed.length;
  const res = await app.request(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Basic ${btoa(`${KEY}:`)}` },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (res.status !== 200) return { status: res.status, body: json, parsed: [] };
  const expected = path === '/v1/batch' ? (body as { batch: unknown[] }).batch.length : 1;
  await waitFor(() => landed.length >= before + expected, { intervalMs: 1, what: `${expected} records on ${topic}` });
  return { status: res.status, body: json, parsed: landed.slice(before, before + expected).map(parse) };
}

/** The envelope the router read, or a failure that names the router's reason. */
function routed(sent: Sent, i = 0): Envelope {
  expect(sent.status).toBe(200);
  const p = sent.parsed[i]!;
  if (p.kind !== 'ok') throw new Error(`the router refused what ingest acknowledged: ${JSON.stringify(p)}`);
  return p.value;
}

const nested = (levels: number): unknown => {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
};

describe('what ingest acknowledges, the router accepts: regressions (#15, #16)', () => {
  it('an empty anonymousId next to a userId counts as absent', async () => {
    const env = routed(await send('/v1/track', { userId: 'u', anonymousId: '', event: 'x' }));
    expect(env.userId).toBe('u');
    expect('anonymousId' in env).toBe(false);
  });

  it('an empty userId next to an anonymousId counts as absent', async () => {
    const env = routed(await send('/v1/track', { anonymousId: 'a', userId: '', event: 'x' }));
    expect(env.anonymousId).toBe('a');
    expect('userId' in env).toBe(false);
  });

  it('with both ids empty the event is still refused', async () => {
    const sent = await send('/v1/track', { anonymousId: '', userId: '', event: 'x' });
    expect(sent).toMatchObject({ status: 400, body: { code: 'no_user_anon_id' } });
  });

  it('a numeric originalTimestamp is epoch milliseconds, written as ISO-8601, and is the client time', async () => {
    const env = routed(await send('/v1/track', { userId: 'u', event: 'x', originalTimestamp: 1700000000000 }));
    expect(env.originalTimestamp).toBe('2023-11-14T22:13:20.000Z');
    expect(env.timestamp).toBe('2023-11-14T22:13:20.000Z');
  });

  it('an originalTimestamp with sentAt is corrected for clock skew, as RudderStack SDKs send it', async () => {
    const env = routed(
      await send('/v1/track', { userId: 'u', event: 'x', originalTimestamp: '2026-11-27T13:00:00.000Z', sentAt: '2026-11-27T13:00:05.000Z' }),
    );
    expect(env).toMatchObject({ originalTimestamp: '2026-11-27T13:00:00.000Z', timestamp: '2026-11-27T11:59:55.000Z' });
  });

  it.each([
    ['originalTimestamp', 'yesterday'],
    ['timestamp', '+010000-01-01T00:00:00Z'],
    ['timestamp', 1733400000000000000],
    ['timestamp', '0000-12-31T23:59:59.999Z'],
    ['sentAt', -62135596800001],
    ['timestamp', '1'],
    ['sentAt', '2024-01-01 10:00:00'],
    ['timestamp', true],
  ])('%s %j is refused with 400 invalid_timestamp naming the field', async (field, value) => {
    const sent = await send('/v1/track', { userId: 'u', event: 'x', [field]: value });
    expect(sent).toMatchObject({ status: 400, body: { code: 'invalid_timestamp', details: { field } } });
  });

  it('the range ends are accepted: 0001-01-01 and 9999-12-31T23:59:59.999Z', async () => {
    const env = routed(await send('/v1/track', { userId: 'u', event: 'x', timestamp: '0001-01-01T00:00:00.000Z', originalTimestamp: 253402300799999 }));
    expect(env.timestamp).toBe('0001-01-01T00:00:00.000Z');
    const env2 = routed(await send('/v1/track', { userId: 'u', event: 'x', timestamp: 253402300799999 }));
    expect(env2.timestamp).toBe('9999-12-31T23:59:59.999Z');
  });

  it('a time without an offset is read as UTC, whatever the server zone', async () => {
    const env = routed(await send('/v1/track', { userId: 'u', event: 'x', timestamp: '2026-11-20T08:00' }));
    expect(env.timestamp).toBe('2026-11-20T08:00:00.000Z');
  });

  it('ISO strings at the ends of Date’s range (timestamp +275760, sentAt −271821) are a 400, not a 500', async () => {
    const sent = await send('/v1/track', { userId: 'u', event: 'x', timestamp: '+275760-09-13T00:00:00.000Z', sentAt: '-271821-04-20T00:00:00.000Z' });
    expect(sent).toMatchObject({ status: 400, body: { code: 'invalid_timestamp' } });
  });

  it('stamps in range whose skew correction would leave the range keep the client time (valid fields are never refused together)', async () => {
    const env = routed(await send('/v1/track', { userId: 'u', event: 'x', timestamp: '0001-01-02T00:00:00Z', sentAt: '9999-12-31T00:00:00Z' }));
    expect(env).toMatchObject({ timestamp: '0001-01-02T00:00:00.000Z', originalTimestamp: '0001-01-02T00:00:00.000Z', sentAt: '9999-12-31T00:00:00.000Z' });
  });

  it('one poison timestamp in a batch refuses the batch with 400 and its index, not a 500', async () => {
    const sent = await send('/v1/batch', {
      batch: [
        { type: 'track', userId: 'u', event: 'ok' },
        { type: 'track', userId: 'u', event: 'e', timestamp: 1733400000000000000 },
      ],
    });
    expect(sent).toMatchObject({ status: 400, body: { code: 'invalid_timestamp', details: { field: 'timestamp', index: 1 } } });
  });

  it('a batch-level sentAt follows the same rule', async () => {
    const sent = await send('/v1/batch', { batch: [{ type: 'track', userId: 'u', event: 'e' }], sentAt: 'soon' });
    expect(sent).toMatchObject({ status: 400, body: { code: 'invalid_timestamp', details: { field: 'sentAt' } } });
    expect(sent.body).not.toHaveProperty('index');
  });

  it(`properties nested 5,000 levels deep are a 400 nesting_too_deep naming the limit (${MAX_JSON_DEPTH})`, async () => {
    // Built as text: JSON.stringify itself overflows on it.
    const sent = await send('/v1/track', `{"userId":"u","event":"x","properties":{"a":${'['.repeat(5_000)}1${']'.repeat(5_000)}}}`);
    expect(sent).toMatchObject({ status: 400, body: { code: 'nesting_too_deep', details: { field: 'properties', maxDepth: MAX_JSON_DEPTH } } });
    expect(sent.body.message).toContain(String(MAX_JSON_DEPTH));
  });

  it(`${MAX_JSON_DEPTH} levels are accepted, one more is refused, in any field and in a batch's context`, async () => {
    // `properties` itself is the first level.
    routed(await send('/v1/track', { userId: 'u', event: 'x', properties: { a: nested(MAX_JSON_DEPTH - 1) } }));
    expect(await send('/v1/track', { userId: 'u', event: 'x', properties: { a: nested(MAX_JSON_DEPTH) } })).toMatchObject({ status: 400 });
    expect(await send('/v1/identify', { userId: 'u', extra: nested(MAX_JSON_DEPTH + 1) })).toMatchObject({
      status: 400,
      body: { code: 'nesting_too_deep', details: { field: 'extra' } },
    });
    expect(await send('/v1/batch', { batch: [{ type: 'page', userId: 'u' }, { type: 'page', userId: 'u', traits: { t: nested(MAX_JSON_DEPTH) } }] })).toMatchObject({
      status: 400,
      body: { code: 'nesting_too_deep', details: { field: 'traits', index: 1 } },
    });
    expect(await send('/v1/batch', { batch: [{ type: 'page', userId: 'u' }], context: { c: nested(MAX_JSON_DEPTH) } })).toMatchObject({
      status: 400,
      body: { code: 'nesting_too_deep', details: { field: 'context' } },
    });
  });

  it("a client's routing is dropped: only the router routes", async () => {
    const env = routed(await send('/v1/track', { userId: 'u', event: 'x', routing: 'nope', v: 7, sourceId: 'other' }));
    expect(env).toMatchObject({ v: 1, sourceId: 'web' });
    expect('routing' in env).toBe(false);
  });
});

describe('the OpenAPI document states the same rules', () => {
  it('timestamps: the ISO pattern and the epoch-ms range; JSON fields: the depth; errors: field and maxDepth', async () => {
    type S = { anyOf?: S[]; pattern?: string; type?: string; minimum?: number; maximum?: number; description?: string; properties?: Record<string, S> };
    const doc = (await (await app.request('/openapi.json')).json()) as { components: { schemas: { Message: S; Error: S } } };
    const message = doc.components.schemas.Message.properties!;
    const branches = message.timestamp!.anyOf!.flatMap((b) => b.anyOf ?? [b]);
    const pattern = new RegExp(branches.find((b) => b.pattern)!.pattern!);
    expect(pattern.test('2026-11-27T10:00:00.000Z')).toBe(true);
    expect(pattern.test('+010000-01-01T00:00:00Z')).toBe(false);
    expect(pattern.test('yesterday')).toBe(false);
    expect(branches.find((b) => b.type === 'number')).toMatchObject({ minimum: TIMESTAMP_RANGE.min, maximum: TIMESTAMP_RANGE.max });
    expect(message.properties!.description).toContain(String(MAX_JSON_DEPTH));
    expect(message.userId!.description).toContain('empty string counts as absent');
    const details = (doc.components.schemas.Error.properties as Record<string, { properties?: Record<string, unknown> }>).details!;
    expect(Object.keys(details.properties!)).toEqual(expect.arrayContaining(['field', 'maxDepth', 'index']));
  });
});

// ---- the property --------------------------------------------------------------------------

/** Mostly `good`, now and then `bad`: enough bodies must pass for the property to say something. */
const mostly = <T, U>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<U>) => fc.oneof({ arbitrary: good, weight: 12 }, { arbitrary: bad, weight: 1 });
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(fc.oneof({ arbitrary: arb, weight: 6 }, { arbitrary: fc.constant(null), weight: 1 }), { nil: undefined });
const idArb = mostly(fc.oneof(fc.string({ minLength: 1, maxLength: 8 }), fc.integer()), fc.oneof(fc.constant(''), fc.double(), fc.boolean()));
const DAY = 86_400_000;
/** Instants on both sides of every edge: 0001, 9999, and Date's own range. */
const msArb = fc.oneof(
  fc.integer({ min: Date.parse('2020-01-01'), max: Date.parse('2030-01-01') }),
  fc.integer({ min: -62135596800000 - DAY, max: -62135596800000 + DAY }),
  fc.integer({ min: 253402300799999 - DAY, max: 253402300799999 + DAY }),
  fc.integer({ min: -8.64e15, max: 8.64e15 }),
  fc.double({ noNaN: false }),
);
const recent = fc.date({ min: new Date('2000-01-01'), max: new Date('2040-01-01'), noInvalidDate: true });
const stampArb = mostly(
  fc.oneof(
    recent.map((d) => d.toISOString()),
    recent.map((d) => d.getTime()),
    recent.map((d) => d.toISOString().replace('Z', '+05:30')),
    recent.map((d) => d.toISOString().slice(0, 19)),
  ),
  fc.oneof(
    msArb,
    msArb.filter((ms) => Number.isFinite(ms) && Math.abs(ms) <= 8.64e15).map((ms) => new Date(ms).toISOString()),
    fc.constantFrom('', 'yesterday', '1', '2024-02-30T00:00:00Z', '2024-01-01T00:00:00+0100', '0000-06-01T00:00:00Z', '9999-12-31T23:59:59-01:00'),
    fc.string({ maxLength: 12 }),
  ),
);
const deepArb = fc.integer({ min: MAX_JSON_DEPTH - 2, max: MAX_JSON_DEPTH + 2 }).map((n) => ({ deep: nested(n) }));
const objArb = mostly(fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }), fc.oneof(deepArb, fc.jsonValue({ maxDepth: 2 })));

const messageArb = fc.record(
  {
    type: mostly(fc.constantFrom('track', 'identify', 'page', 'screen', 'group', 'alias'), fc.constantFrom('purchase', '')),
    messageId: maybe(mostly(fc.string({ maxLength: 100 }), fc.oneof(fc.string({ minLength: 101, maxLength: 110 }), fc.integer()))),
    userId: maybe(idArb),
    anonymousId: maybe(idArb),
    event: maybe(mostly(fc.string({ maxLength: 8 }), fc.integer())),
    name: maybe(fc.string({ maxLength: 8 })),
    groupId: maybe(idArb),
    previousId: maybe(idArb),
    properties: maybe(objArb),
    traits: maybe(objArb),
    context: maybe(objArb),
    integrations: maybe(objArb),
    timestamp: maybe(stampArb),
    originalTimestamp: maybe(stampArb),
    sentAt: maybe(stampArb),
    routing: maybe(fc.jsonValue({ maxDepth: 2 })),
    v: maybe(fc.jsonValue({ maxDepth: 1 })),
    receivedAt: maybe(fc.jsonValue({ maxDepth: 1 })),
    extra: maybe(mostly(fc.jsonValue({ maxDepth: 3 }), deepArb)),
  },
  { requiredKeys: ['type'] },
);

const requestArb = fc.oneof(
  fc.record({ path: fc.constantFrom('/v1/track', '/v1/identify', '/v1/page', '/v1/group', '/v1/alias'), body: messageArb as fc.Arbitrary<unknown> }),
  fc.record({
    path: fc.constant('/v1/batch'),
    body: fc.record(
      { batch: fc.array(messageArb, { minLength: 1, maxLength: 3 }), context: maybe(objArb), integrations: maybe(objArb), sentAt: maybe(stampArb) },
      { requiredKeys: ['batch'] },
    ) as fc.Arbitrary<unknown>,
  }),
);

describe('what ingest acknowledges, the router accepts: property', () => {
  it('for generated bodies: never a 5xx, and every 2xx lands as envelopes the router parses', async () => {
    const counts = { accepted: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(requestArb, async ({ path, body }) => {
        const sent = await send(path, body);
        expect(sent.status, JSON.stringify(sent.body)).toBeLessThan(500);
        if (sent.status !== 200) {
          counts.refused++;
          expect(sent.status).toBe(400);
          expect(typeof sent.body.code).toBe('string');
          return;
        }
        counts.accepted++;
        for (const p of sent.parsed) expect(p, 'the router refused what ingest acknowledged').toMatchObject({ kind: 'ok' });
      }),
      { seed: 1_512_2025, numRuns: 1_000, endOnFailure: false },
    );
    // The generators must reach both sides of the rule, or the property says little.
    expect(counts.accepted).toBeGreaterThan(100);
    expect(counts.refused).toBeGreaterThan(100);
  });
});
