import { describe, expect, it } from 'vitest';
import { decodeEnvelope, encodeEnvelope, type Envelope } from '../core/envelope.ts';
import { spliceRouting } from './splice-routing.ts';

// An identify with traits: fields in an order other than the encoder's own.
const base: Envelope = {
  traits: { email: 'a@b.test', plan: 'pro', nested: { braces: '{}' } },
  anonymousId: 'anon-9',
  type: 'identify',
  messageId: 'm-9',
  sourceId: 'src_2',
  v: 1,
  timestamp: '2026-11-27T10:00:00.000Z',
  receivedAt: '2026-11-27T10:00:01.000Z',
};

describe('spliceRouting', () => {
  it('splices the routing into the bytes as read: the same bytes as encoding the routed envelope', () => {
    const routing = { configVersion: 7, destinationId: 'hook', routedAt: '2026-11-27T10:00:02.000Z' };
    const raw = Buffer.from(encodeEnvelope({ ...base, context: { ip: '203.0.113.9', page: { url: 'https://x.test/?a={b}' } } }));
    const spliced = spliceRouting(raw, JSON.stringify(routing));
    expect(spliced?.toString()).toBe(encodeEnvelope({ ...(JSON.parse(raw.toString()) as Envelope), routing }));
    const decoded = decodeEnvelope(spliced!);
    expect(decoded.ok && decoded.envelope.routing).toEqual(routing);

    // Whitespace after the object is no obstacle; anything but an object with a field is.
    expect(JSON.parse(spliceRouting(Buffer.from(`${encodeEnvelope(base)} \n`), '{"a":1}')!.toString()).routing).toEqual({ a: 1 });
    expect(spliceRouting(Buffer.from('{}'), '{"a":1}')).toBeUndefined();
    expect(spliceRouting(Buffer.from('{ \n}'), '{"a":1}')).toBeUndefined();
    expect(spliceRouting(Buffer.from('[1,2]'), '{"a":1}')).toBeUndefined();
    expect(spliceRouting(Buffer.from(''), '{"a":1}')).toBeUndefined();
  });

});
