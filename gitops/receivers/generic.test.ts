import { describe, expect, it } from 'vitest';
import generic from './generic.ts';
import { NOW, expectRefusal, fixture, oversizedBody, request, standardWebhookHeaders } from './testkit.ts';

const SECRET = `whsec_${Buffer.from('generic-signing-key-0123456789ab').toString('base64')}`;
const settings = generic.settingsSchema.parse({ secret: SECRET });
const ID = 'msg_2b0mZ0mCQq0pJ5uBwUOXgDmpvTg';
const T = Math.floor(NOW / 1000);

const signed = (body: string, timestamp = T, over: Record<string, string> = {}) => request(body, { ...standardWebhookHeaders(SECRET, ID, timestamp, body), ...over });

describe('generic receiver', () => {
  it('parses a signed push, with webhook-id as the delivery id', () => {
    expect(generic.receive(signed(fixture('generic/push.json')), settings)).toEqual({
      kind: 'pushes',
      pushes: [{ repository: 'registry.example.com/team/app', tag: '1.2.3', digest: 'sha256:3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498' }],
      deliveryId: ID,
    });
    const noDigest = '{"image":"localhost:5000/app","tag":"dev"}';
    expect(generic.receive(signed(noDigest), settings)).toEqual({ kind: 'pushes', pushes: [{ repository: 'localhost:5000/app', tag: 'dev' }], deliveryId: ID });
  });

  it('accepts any matching v1 signature among several, and skips other versions', () => {
    const body = fixture('generic/push.json');
    const good = standardWebhookHeaders(SECRET, ID, T, body)['webhook-signature']!;
    const list = `v1a,${good.slice(3)} v1,${Buffer.alloc(32).toString('base64')} ${good}`;
    expect(generic.receive(signed(body, T, { 'webhook-signature': list }), settings).kind).toBe('pushes');
    expectRefusal(() => generic.receive(signed(body, T, { 'webhook-signature': `v1a,${good.slice(3)}` }), settings), 'bad_signature', 401);
  });

  it('accepts timestamps within 5 minutes either way, and refuses older or newer ones', () => {
    const body = fixture('generic/push.json');
    expect(generic.receive(signed(body, T - 300), settings).kind).toBe('pushes');
    expect(generic.receive(signed(body, T + 300), settings).kind).toBe('pushes');
    expectRefusal(() => generic.receive(signed(body, T - 301), settings), 'stale_timestamp', 401);
    expectRefusal(() => generic.receive(signed(body, T + 301), settings), 'stale_timestamp', 401);
  });

  it('refuses missing headers, a bad timestamp, and signatures over something else', () => {
    const body = fixture('generic/push.json');
    for (const header of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
      const { [header]: _omit, ...rest } = signed(body).headers;
      expectRefusal(() => generic.receive(request(body, rest), settings), 'missing_signature', 401);
    }
    expectRefusal(() => generic.receive(signed(body, T, { 'webhook-timestamp': `${T}.5` }), settings), 'bad_signature', 401);
    // The id and timestamp are signed: changing either breaks the signature.
    expectRefusal(() => generic.receive(signed(body, T, { 'webhook-id': 'msg_other' }), settings), 'bad_signature', 401);
    expectRefusal(() => generic.receive(signed(body, T, { 'webhook-timestamp': String(T + 1) }), settings), 'bad_signature', 401);
    const other = `whsec_${Buffer.from('another-signing-key-0123456789ab').toString('base64')}`;
    expectRefusal(() => generic.receive(request(body, standardWebhookHeaders(other, ID, T, body)), settings), 'bad_signature', 401);
  });

  it('refuses a secret without the whsec_ prefix', () => {
    expect(generic.settingsSchema.safeParse({ secret: 'generic-signing-key-0123456789ab' }).success).toBe(false);
  });

  it('refuses invalid JSON, a payload without a tag, and oversized bodies', () => {
    expectRefusal(() => generic.receive(signed('{"image":'), settings), 'invalid_payload', 400);
    const e = expectRefusal(() => generic.receive(signed('{"image":"registry.example.com/app"}'), settings), 'invalid_payload', 400);
    expect(e.details).toEqual({ field: 'tag' });
    expectRefusal(() => generic.receive(signed(oversizedBody()), settings), 'payload_too_large', 400);
  });
});
