import { describe, expect, it } from 'vitest';
import { decodeEnvelope, encodeEnvelope, Envelope, eventKey, type Envelope as EnvelopeT } from './envelope.ts';

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
});
