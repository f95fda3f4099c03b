import { describe, expect, it } from 'vitest';
import ghcr from './ghcr.ts';
import { expectRefusal, fixture, fixtureJson, githubSignature, oversizedBody, request } from './testkit.ts';

const SECRET = 'github-webhook-secret-0123';
const settings = ghcr.settingsSchema.parse({ secret: SECRET });
const DELIVERY = '72d3162e-cc78-11e3-81ab-4c9367dc0958';
const DIGEST = 'sha256:3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498';

function signed(body: string, event = 'package', over: Record<string, string> = {}) {
  return request(body, {
    'content-type': 'application/json',
    'x-github-event': event,
    'x-github-delivery': DELIVERY,
    'x-hub-signature-256': githubSignature(SECRET, body),
    ...over,
  });
}

describe('ghcr receiver', () => {
  it('parses a published container version: lower-case ghcr.io name, tag, digest, delivery id', () => {
    expect(ghcr.receive(signed(fixture('ghcr/package-published.json')), settings)).toEqual({
      kind: 'pushes',
      pushes: [{ repository: 'ghcr.io/codertocat/hello-world', tag: '1.2.3', digest: DIGEST, pushedAt: Date.parse('2019-05-09T23:28:30Z') }],
      deliveryId: DELIVERY,
    });
  });

  it('reads the legacy registry_package event', () => {
    const result = ghcr.receive(signed(fixture('ghcr/registry-package-published.json'), 'registry_package'), settings);
    expect(result).toMatchObject({ kind: 'pushes', pushes: [{ repository: 'ghcr.io/codertocat/hello-world', tag: '1.2.3' }] });
  });

  it('ignores ping, other events, other actions, untagged versions and non-container packages', () => {
    expect(ghcr.receive(signed(fixture('ghcr/ping.json'), 'ping'), settings)).toEqual({
      kind: 'ignored',
      reason: 'GitHub event "ping" is not a package event',
      deliveryId: DELIVERY,
    });
    expect(ghcr.receive(signed('{"ref":"refs/heads/main"}', 'push'), settings).kind).toBe('ignored');
    const updated = fixtureJson('ghcr/package-published.json');
    updated.action = 'updated';
    expect(ghcr.receive(signed(JSON.stringify(updated)), settings)).toMatchObject({ kind: 'ignored', reason: 'package action "updated" is not published' });
    expect(ghcr.receive(signed(fixture('ghcr/package-published-untagged-doc.json')), settings)).toMatchObject({
      kind: 'ignored',
      reason: 'container version without a tag',
    });
    expect(ghcr.receive(signed(fixture('ghcr/package-published-npm-doc.json')), settings)).toMatchObject({ kind: 'ignored', reason: 'not a container package' });
  });

  it('refuses a missing or wrong signature with 401, before looking at the event', () => {
    const body = fixture('ghcr/package-published.json');
    const { 'x-hub-signature-256': _omit, ...unsigned } = signed(body).headers;
    expectRefusal(() => ghcr.receive(request(body, unsigned), settings), 'missing_signature', 401);
    expectRefusal(() => ghcr.receive(signed(body, 'package', { 'x-hub-signature-256': githubSignature('another-secret-0123456789', body) }), settings), 'bad_signature', 401);
    expectRefusal(() => ghcr.receive(signed(body, 'ping', { 'x-hub-signature-256': githubSignature(SECRET, `${body} `) }), settings), 'bad_signature', 401);
    const hex = githubSignature(SECRET, body).slice('sha256='.length);
    expectRefusal(() => ghcr.receive(signed(body, 'package', { 'x-hub-signature-256': hex }), settings), 'bad_signature', 401);
    // A re-serialised body is a different body: the signature covers the exact bytes.
    const reformatted = JSON.stringify(JSON.parse(body));
    expectRefusal(() => ghcr.receive(signed(body, 'package', { 'x-hub-signature-256': githubSignature(SECRET, reformatted) }), settings), 'bad_signature', 401);
  });

  it('refuses invalid JSON, a missing event header, and oversized bodies', () => {
    expectRefusal(() => ghcr.receive(signed('{"action":'), settings), 'invalid_payload', 400);
    const body = fixture('ghcr/package-published.json');
    const { 'x-github-event': _omit, ...noEvent } = signed(body).headers;
    expectRefusal(() => ghcr.receive(request(body, noEvent), settings), 'invalid_payload', 400);
    expectRefusal(() => ghcr.receive(signed(fixture('ghcr/package-published.json'), 'registry_package'), settings), 'invalid_payload', 400);
    expectRefusal(() => ghcr.receive(signed(oversizedBody()), settings), 'payload_too_large', 400);
  });
});
