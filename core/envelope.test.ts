import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CLIENT_DATETIME, ClientTimestamp, decodeEnvelope, encodeEnvelope, Envelope, envelopeTimestamp, eventKey, nestsDeeperThan, TIMESTAMP_RANGE, type Envelope as EnvelopeT } from './envelope.ts';

const base: EnvelopeT = {
  v: 1,
  sourceId: 'src_1',
  type: 'track',
  event: 'Order Completed',
  messageId: 'm-1',
  userId: 'u-1',
  properties: { revenue: 12.5 },
  timestamp: '2026-11-27T10:00:00.000Z',
  receivedAt: '2026-11-27T10:00:01.000Z',
};

describe('envelope', () => {
  it('round-trips through encode and decode', () => {
    const decoded = decodeEnvelope(encodeEnvelope(base));
    expect(decoded).toEqual({ ok: true, envelope: base });
  });

  it('keeps unknown top-level fields, as Segment does', () => {
    const parsed = Envelope.parse({ ...base, version: 2, channel: 'server' });
    expect((parsed as Record<string, unknown>).channel).toBe('server');
  });

  it('requires userId or anonymousId', () => {
    const { userId: _, ...anon } = base;
    expect(Envelope.safeParse(anon).success).toBe(false);
    expect(Envelope.safeParse({ ...anon, anonymousId: 'a-1' }).success).toBe(true);
  });

  it('requires the version, sourceId and a known call type', () => {
    expect(Envelope.safeParse({ ...base, v: 2 }).success).toBe(false);
    expect(Envelope.safeParse({ ...base, sourceId: '' }).success).toBe(false);
    expect(Envelope.safeParse({ ...base, type: 'purchase' }).success).toBe(false);
  });

  it('caps messageId at 100 characters', () => {
    expect(Envelope.safeParse({ ...base, messageId: 'x'.repeat(100) }).success).toBe(true);
    expect(Envelope.safeParse({ ...base, messageId: 'x'.repeat(101) }).success).toBe(false);
  });

  it('decode reports poison values instead of throwing', () => {
    expect(decodeEnvelope(Buffer.from('{not json'))).toMatchObject({ ok: false, reason: 'invalid_json' });
    expect(decodeEnvelope(null)).toMatchObject({ ok: false, reason: 'invalid_json' });
    expect(decodeEnvelope('{"v":1}')).toMatchObject({ ok: false, reason: 'invalid_envelope' });
  });

  it('keys by source and user, falling back to anonymousId', () => {
    expect(eventKey('s', { userId: 'u', anonymousId: 'a' })).toBe('s:u');
    expect(eventKey('s', { anonymousId: 'a' })).toBe('s:a');
  });

  it('what envelopeTimestamp writes at the ends of the range is what the schema takes; one ms beyond, neither', () => {
    for (const ms of [TIMESTAMP_RANGE.min, TIMESTAMP_RANGE.max, 0, Date.parse('2026-11-27T10:00:00Z')]) {
      expect(Envelope.safeParse({ ...base, timestamp: envelopeTimestamp(ms) }).success, String(ms)).toBe(true);
    }
    expect(envelopeTimestamp(TIMESTAMP_RANGE.min - 1)).toBeUndefined();
    expect(envelopeTimestamp(TIMESTAMP_RANGE.max + 1)).toBeUndefined();
    expect(envelopeTimestamp(8.64e15 + 1)).toBeUndefined();
  });

  it.each([
    ['0000-06-01T00:00:00.000Z', false],
    ['0001-01-01T00:30:00+01:00', false],
    ['9999-12-31T23:30:00-01:00', false],
    ['+010000-01-01T00:00:00.000Z', false],
    ['2026-11-27T10:00:00', false],
    ['0000-12-31T23:30:00-01:00', true],
    ['0001-01-01T12:00:00+01:00', true],
    ['9999-12-31T12:00:00-01:00', true],
    ['2026-11-27T10:00:00+05:30', true],
  ])('envelope timestamp %s → %s: the instant in UTC decides, Z or an offset required', (iso, ok) => {
    expect(Envelope.safeParse({ ...base, timestamp: iso }).success).toBe(ok);
  });

  it('client timestamps: ISO-8601 (no offset is UTC) or epoch ms within the range; "" is absent', () => {
    for (const v of ['2026-11-27T10:00', '2026-11-27T10:00:00.123456+01:00', 0, TIMESTAMP_RANGE.max, '']) expect(ClientTimestamp.safeParse(v).success, String(v)).toBe(true);
    for (const v of ['yesterday', '1', '2024-02-30T00:00:00Z', '2024-01-01T00:00:00+0100', TIMESTAMP_RANGE.max + 1, '+010000-01-01T00:00:00Z', true]) {
      expect(ClientTimestamp.safeParse(v).success, String(v)).toBe(false);
    }
  });

  it.each([
    ['0000-06-01T00:00:00Z', false],
    ['0000-12-31T23:30:00-01:00', false],
    ['0400-02-29T00:00:00Z', true],
    ['0000-02-29T00:00:00Z', false],
    ['0001-01-01T00:00:00', true],
    ['0001-01-01T00:00:00Z', true],
    ['0001-01-01T00:00:00+00:00', true],
    ['0001-01-01T00:00:00-05:00', true],
    ['0001-01-01T00:00:00+01:00', false],
    ['0001-01-01T12:00:00+01:00', false],
    ['0001-01-02T00:00:00+01:00', true],
    ['9999-12-31T23:59:59.999Z', true],
    ['9999-12-31T12:00:00+05:00', true],
    ['9999-12-31T00:00:00-00:00', true],
    ['9999-12-31T00:00:00-01:00', false],
    ['9999-12-30T23:00:00-01:00', true],
  ])('client timestamp %s → %s: a year from 0001, and no offset that could leave the range on its first or last day', (iso, ok) => {
    expect(ClientTimestamp.safeParse(iso).success).toBe(ok);
  });

  it("the client timestamp's JSON Schema is the rule itself: its pattern, and the epoch range", () => {
    const schema = z.toJSONSchema(ClientTimestamp, { io: 'input' }) as { anyOf: Array<{ type: string; pattern?: string; minimum?: number; maximum?: number }> };
    expect(schema.anyOf[0]!.pattern).toBe(CLIENT_DATETIME.source);
    expect(schema.anyOf[1]).toMatchObject({ type: 'number', minimum: TIMESTAMP_RANGE.min, maximum: TIMESTAMP_RANGE.max });
  });

  it('nestsDeeperThan counts objects and arrays, the value itself first', () => {
    expect(nestsDeeperThan({ a: [1] }, 2)).toBe(false);
    expect(nestsDeeperThan({ a: [[1]] }, 2)).toBe(true);
    expect(nestsDeeperThan('x', 0)).toBe(false);
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(nestsDeeperThan(deep, 64)).toBe(true);
  });
});
