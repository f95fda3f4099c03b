import { describe, expect, it } from 'vitest';
import quay from './quay.ts';
import { expectRefusal, fixture, fixtureJson, oversizedBody, request } from './testkit.ts';

const SECRET = 'quay-path-secret-0123456789';
const settings = quay.settingsSchema.parse({ pathSecret: SECRET });
const at = (body: string, pathSecret: string | null = SECRET) => request(body, { 'content-type': 'application/json' }, { pathSecret: pathSecret ?? undefined });

describe('quay receiver', () => {
  it('parses the documented push: docker_url as the repository, no digest, no delivery id', () => {
    expect(quay.receive(at(fixture('quay/push-doc.json')), settings)).toEqual({
      kind: 'pushes',
      pushes: [{ repository: 'quay.io/dgangaia/test', tag: 'latest' }],
    });
  });

  it('returns one push per updated tag, on a self-hosted Quay too', () => {
    expect(quay.receive(at(fixture('quay/push-multi.json')), settings)).toEqual({
      kind: 'pushes',
      pushes: [
        { repository: 'quay.example.com/team/app', tag: '1.2.3' },
        { repository: 'quay.example.com/team/app', tag: 'latest' },
      ],
    });
  });

  it('reads the early quay.io format, where updated_tags maps tag to image id', () => {
    expect(quay.receive(at(fixture('quay/push-legacy.json')), settings)).toEqual({
      kind: 'pushes',
      pushes: [{ repository: 'quay.io/devtable/ubuntu', tag: 'latest' }],
    });
  });

  it('ignores other notifications and pushes without tags', () => {
    expect(quay.receive(at(fixture('quay/build-queued-doc.json')), settings)).toMatchObject({ kind: 'ignored', reason: 'Quay notification is not a repository push' });
    const body = fixtureJson('quay/push-doc.json');
    body.updated_tags = [];
    expect(quay.receive(at(JSON.stringify(body)), settings).kind).toBe('ignored');
  });

  it('refuses a missing or wrong secret path with 401', () => {
    const body = fixture('quay/push-doc.json');
    expectRefusal(() => quay.receive(at(body, null), settings), 'missing_signature', 401);
    expectRefusal(() => quay.receive(at(body, 'hub-path-secret-0123456789'), settings), 'bad_token', 401);
  });

  it('refuses invalid JSON, a malformed payload and oversized bodies', () => {
    expectRefusal(() => quay.receive(at('not json'), settings), 'invalid_payload', 400);
    expectRefusal(() => quay.receive(at('{"updated_tags": "latest", "docker_url": "quay.io/a/b"}'), settings), 'invalid_payload', 400);
    expectRefusal(() => quay.receive(at('{"updated_tags": ["latest"]}'), settings), 'invalid_payload', 400);
    expectRefusal(() => quay.receive(at(oversizedBody()), settings), 'payload_too_large', 400);
  });
});
