import { describe, expect, it } from 'vitest';
import distribution from './distribution.ts';
import { expectRefusal, fixture, fixtureJson, oversizedBody, request } from './testkit.ts';

const TOKEN = 'dist-token-0123456789abcdef';
const settings = distribution.settingsSchema.parse({ token: TOKEN });
const headers = (over: Record<string, string> = {}) => ({
  authorization: `Bearer ${TOKEN}`,
  'content-type': 'application/vnd.docker.distribution.events.v2+json',
  ...over,
});

describe('distribution receiver', () => {
  it('keeps tagged manifest and index pushes, with the registry host, and dedups on the event ids', () => {
    const result = distribution.receive(request(fixture('distribution/push-tagged.json'), headers()), settings);
    expect(result).toEqual({
      kind: 'pushes',
      pushes: [
        {
          repository: 'registrycluster.local/library/test',
          tag: '1.2.3',
          digest: 'sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf',
          pushedAt: Date.parse('2006-01-02T15:04:05Z'),
        },
        {
          repository: 'registrycluster.local/team/app',
          tag: 'v2.0.0-rc.1',
          digest: `sha256:${'b'.repeat(64)}`,
          pushedAt: Date.parse('2016-03-09T22:44:26.402Z'),
        },
      ],
      deliveryId: 'asdf-asdf-asdf-asdf-0,asdf-asdf-asdf-asdf-3',
    });
  });

  it('ignores the documented envelope: its manifest push names no tag, the rest are layers', () => {
    const result = distribution.receive(request(fixture('distribution/push-doc.json'), headers()), settings);
    expect(result).toMatchObject({ kind: 'ignored', reason: 'no tagged manifest push among 3 event(s)' });
  });

  it('ignores pulls', () => {
    expect(distribution.receive(request(fixture('distribution/pull-doc.json'), headers()), settings).kind).toBe('ignored');
  });

  it('accepts the v1 envelope type and plain JSON', () => {
    for (const type of ['application/vnd.docker.distribution.events.v1+json', 'application/json; charset=utf-8']) {
      const result = distribution.receive(request(fixture('distribution/push-tagged.json'), headers({ 'content-type': type })), settings);
      expect(result.kind).toBe('pushes');
    }
  });

  it('refuses other content types', () => {
    expectRefusal(
      () => distribution.receive(request(fixture('distribution/push-tagged.json'), headers({ 'content-type': 'text/plain' })), settings),
      'invalid_payload',
      400,
    );
  });

  it('uses the configured host over request.host', () => {
    const s = distribution.settingsSchema.parse({ token: TOKEN, host: 'registry.example.com:5000' });
    const result = distribution.receive(request(fixture('distribution/push-tagged.json'), headers()), s);
    expect(result.kind === 'pushes' && result.pushes.map((p) => p.repository)).toEqual([
      'registry.example.com:5000/library/test',
      'registry.example.com:5000/team/app',
    ]);
  });

  it('refuses a host setting that is not a registry host', () => {
    expect(distribution.settingsSchema.safeParse({ token: TOKEN, host: 'evil host/x' }).success).toBe(false);
    expect(distribution.settingsSchema.safeParse({ token: TOKEN, host: 'team' }).success).toBe(false);
    expect(distribution.settingsSchema.safeParse({ token: 'short' }).success).toBe(false);
  });

  it('refuses a push without any host rather than read it as a Docker Hub name', () => {
    const body = fixtureJson('distribution/push-tagged.json');
    delete body.events[0].request;
    expectRefusal(() => distribution.receive(request(JSON.stringify(body), headers()), settings), 'invalid_payload', 400);
  });

  it('refuses a missing or wrong token with 401', () => {
    const body = fixture('distribution/push-tagged.json');
    const { authorization: _omit, ...noAuth } = headers();
    expectRefusal(() => distribution.receive(request(body, noAuth), settings), 'missing_signature', 401);
    expectRefusal(() => distribution.receive(request(body, headers({ authorization: 'Bearer wrong' })), settings), 'bad_token', 401);
    expectRefusal(() => distribution.receive(request(body, headers({ authorization: TOKEN })), settings), 'bad_token', 401);
    expectRefusal(() => distribution.receive(request(body, headers({ authorization: `Bearer ${TOKEN}x` })), settings), 'bad_token', 401);
  });

  it('checks the token before it parses the body', () => {
    expectRefusal(() => distribution.receive(request('{not json', headers({ authorization: 'Bearer x' })), settings), 'bad_token', 401);
  });

  it('refuses invalid JSON and a body that is not an envelope', () => {
    expectRefusal(() => distribution.receive(request('{not json', headers()), settings), 'invalid_payload', 400);
    expectRefusal(() => distribution.receive(request('[]', headers()), settings), 'invalid_payload', 400);
    const e = expectRefusal(() => distribution.receive(request('{"events": {}}', headers()), settings), 'invalid_payload', 400);
    expect(e.details).toEqual({ field: 'events' });
  });

  it('refuses bodies over 1 MiB', () => {
    expectRefusal(() => distribution.receive(request(oversizedBody(), headers()), settings), 'payload_too_large', 400);
  });
});
