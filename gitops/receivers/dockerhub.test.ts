import { describe, expect, it } from 'vitest';
import dockerhub from './dockerhub.ts';
import { expectRefusal, fixture, fixtureJson, oversizedBody, request } from './testkit.ts';

const SECRET = 'hub-path-secret-0123456789';
const settings = dockerhub.settingsSchema.parse({ pathSecret: SECRET });
const at = (body: string, pathSecret: string | null = SECRET) => request(body, { 'content-type': 'application/json' }, { pathSecret: pathSecret ?? undefined });

describe('dockerhub receiver', () => {
  it('parses the documented push: docker.io name, Unix-seconds push time, callback_url as delivery id, no digest', () => {
    expect(dockerhub.receive(at(fixture('dockerhub/push-doc.json')), settings)).toEqual({
      kind: 'pushes',
      pushes: [{ repository: 'docker.io/svendowideit/testhook', tag: 'latest', pushedAt: 1417566161000 }],
      deliveryId: 'https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/',
    });
  });

  it('adds library/ to official images, and has no delivery id without callback_url', () => {
    expect(dockerhub.receive(at(fixture('dockerhub/push-official.json')), settings)).toEqual({
      kind: 'pushes',
      pushes: [{ repository: 'docker.io/library/ubuntu', tag: '24.04', pushedAt: 1732700000000 }],
    });
    const named = fixtureJson('dockerhub/push-official.json');
    named.repository.repo_name = 'library/ubuntu';
    const result = dockerhub.receive(at(JSON.stringify(named)), settings);
    expect(result.kind === 'pushes' && result.pushes[0]!.repository).toBe('docker.io/library/ubuntu');
  });

  it('ignores a push without a tag', () => {
    const body = fixtureJson('dockerhub/push-doc.json');
    delete body.push_data.tag;
    expect(dockerhub.receive(at(JSON.stringify(body)), settings)).toMatchObject({ kind: 'ignored', reason: 'push without a tag' });
  });

  it('refuses a missing or wrong secret path with 401', () => {
    const body = fixture('dockerhub/push-doc.json');
    expectRefusal(() => dockerhub.receive(at(body, null), settings), 'missing_signature', 401);
    expectRefusal(() => dockerhub.receive(at(body, ''), settings), 'missing_signature', 401);
    expectRefusal(() => dockerhub.receive(at(body, 'hub-path-secret-0123456780'), settings), 'bad_token', 401);
    expectRefusal(() => dockerhub.receive(at(body, `${SECRET}/`), settings), 'bad_token', 401);
  });

  it('refuses invalid JSON, a payload without repo_name, and oversized bodies', () => {
    expectRefusal(() => dockerhub.receive(at('{"push_data":'), settings), 'invalid_payload', 400);
    const body = fixtureJson('dockerhub/push-doc.json');
    delete body.repository.repo_name;
    const e = expectRefusal(() => dockerhub.receive(at(JSON.stringify(body)), settings), 'invalid_payload', 400);
    expect(e.details).toEqual({ field: 'repository.repo_name' });
    expectRefusal(() => dockerhub.receive(at(oversizedBody()), settings), 'payload_too_large', 400);
  });
});
