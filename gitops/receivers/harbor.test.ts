import { describe, expect, it } from 'vitest';
import harbor from './harbor.ts';
import { expectRefusal, fixture, fixtureJson, oversizedBody, request } from './testkit.ts';

const AUTH = 'Bearer harbor-0123456789abcdef';
const settings = harbor.settingsSchema.parse({ authHeader: AUTH });
const at = (body: string, authorization: string | null = AUTH) =>
  request(body, { 'content-type': 'application/json', ...(authorization === null ? {} : { authorization }) });

describe('harbor receiver', () => {
  it('parses the documented push: repository and host from resource_url', () => {
    expect(harbor.receive(at(fixture('harbor/push-doc.json')), settings)).toEqual({
      kind: 'pushes',
      pushes: [
        {
          repository: 'hub.harbor.com/test-webhook/debian',
          tag: 'latest',
          digest: 'sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8',
          pushedAt: 1586922308000,
        },
      ],
    });
  });

  it('keeps a port in the host and skips digest-only resources', () => {
    expect(harbor.receive(at(fixture('harbor/push-multi.json')), settings)).toEqual({
      kind: 'pushes',
      pushes: [
        {
          repository: 'harbor.example.com:8443/library/app',
          tag: '1.2.3',
          digest: `sha256:${'1'.repeat(64)}`,
          pushedAt: 1732700000000,
        },
      ],
    });
  });

  it('ignores other event types, tag-less pushes and the CloudEvents format', () => {
    expect(harbor.receive(at(fixture('harbor/pull.json')), settings)).toMatchObject({ kind: 'ignored', reason: 'Harbor event "PULL_ARTIFACT" is not PUSH_ARTIFACT' });
    const body = fixtureJson('harbor/push-multi.json');
    body.event_data.resources = body.event_data.resources.slice(1);
    expect(harbor.receive(at(JSON.stringify(body)), settings).kind).toBe('ignored');
    expect(harbor.receive(at(fixture('harbor/push-cloudevents.json')), settings)).toMatchObject({ kind: 'ignored', reason: expect.stringContaining('Default') });
  });

  it('compares the configured auth header exactly', () => {
    const body = fixture('harbor/push-doc.json');
    expectRefusal(() => harbor.receive(at(body, null), settings), 'missing_signature', 401);
    expectRefusal(() => harbor.receive(at(body, 'harbor-0123456789abcdef'), settings), 'bad_token', 401);
    expectRefusal(() => harbor.receive(at(body, AUTH.toLowerCase()), settings), 'bad_token', 401);
    expectRefusal(() => harbor.receive(at(body, `${AUTH} `), settings), 'bad_token', 401);
    const bare = harbor.settingsSchema.parse({ authHeader: 'harbor-0123456789abcdef' });
    expect(harbor.receive(at(body, 'harbor-0123456789abcdef'), bare).kind).toBe('pushes');
  });

  it('refuses invalid JSON, a push without resource_url, a bad resource_url and oversized bodies', () => {
    expectRefusal(() => harbor.receive(at('{"type":"PUSH_ARTIFACT",'), settings), 'invalid_payload', 400);
    const body = fixtureJson('harbor/push-doc.json');
    delete body.event_data.resources[0].resource_url;
    expectRefusal(() => harbor.receive(at(JSON.stringify(body)), settings), 'invalid_payload', 400);
    body.event_data.resources[0].resource_url = 'hub.harbor.com/test-webhook/debian:latest@sha256:abc';
    expectRefusal(() => harbor.receive(at(JSON.stringify(body)), settings), 'invalid_reference', 400);
    expectRefusal(() => harbor.receive(at(oversizedBody()), settings), 'payload_too_large', 400);
  });
});
