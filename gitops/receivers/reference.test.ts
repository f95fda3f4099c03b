import { describe, expect, it } from 'vitest';
import { isValidDigest, isValidDomain, isValidRepository, isValidTag, parseImageReference, splitRepository, validateReference } from './reference.ts';
import { expectRefusal } from './testkit.ts';

const D = `sha256:${'0123456789abcdef'.repeat(4)}`;

describe('image reference grammar', () => {
  it.each([
    'app',
    'team/app',
    'a/b/c/d',
    'my_app',
    'my__app',
    'my--app',
    'my.app',
    'registry.example.com/team/app',
    'registry.example.com:5000/app',
    'Registry.Example.com/app',
    'localhost/app',
    'localhost:5000/app',
    '10.0.0.1:5000/app',
    '[::1]:5000/app',
    'docker.io/library/ubuntu',
  ])('accepts repository %j', (repository) => {
    expect(isValidRepository(repository)).toBe(true);
  });

  it.each([
    '',
    '../../etc',
    'registry.example.com/../etc',
    'team/../app',
    'team/./app',
    'Team/App',
    'team/App',
    'registry.example.com/Team/app',
    'team/app:1.0',
    'team/app@' + D,
    'team/app ',
    ' team/app',
    'team/app\n',
    'team/app\nevil: true',
    'team/app#x',
    'team//app',
    '/app',
    'app/',
    'team/-app',
    'team/app_',
    'team/app...x',
    'team/a___b',
    'registry.example.com:abc/app',
    'registry..example.com/app',
    '-registry.example.com/app',
    'registry.example.com:5000',
    'registry.example.com/',
    'a'.repeat(256),
    `registry.example.com/${'a'.repeat(240)}`,
  ])('refuses repository %j', (repository) => {
    expect(isValidRepository(repository)).toBe(false);
  });

  it.each(['latest', '1.2.3', 'v1.0.0-rc.1', '_private', 'A_b-C.d', '1.0__x', 'a'.repeat(128)])('accepts tag %j', (tag) => {
    expect(isValidTag(tag)).toBe(true);
  });

  it.each(['', '.hidden', '-x', '1.0\n  evil: true', '1.0 # {"$imagepolicy": "flux-system:app"}', '1.0\n', 'a'.repeat(129), '1.0:2', 'a/b', '1.0@x', 'tag with space', 'ünïcode'])(
    'refuses tag %j',
    (tag) => {
      expect(isValidTag(tag)).toBe(false);
    },
  );

  it('accepts only lower-case sha256 digests of 64 hex digits', () => {
    expect(isValidDigest(D)).toBe(true);
    expect(isValidDigest(D.toUpperCase())).toBe(false);
    expect(isValidDigest(`sha512:${'a'.repeat(128)}`)).toBe(false);
    expect(isValidDigest(`sha256:${'a'.repeat(63)}`)).toBe(false);
    expect(isValidDigest(`sha256:${'a'.repeat(65)}`)).toBe(false);
    expect(isValidDigest(`${D}\n`)).toBe(false);
  });

  it('reads a first component as a registry host only when Docker would', () => {
    expect(splitRepository('registry.example.com/team/app')).toEqual({ domain: 'registry.example.com', path: 'team/app' });
    expect(splitRepository('localhost/app')).toEqual({ domain: 'localhost', path: 'app' });
    expect(splitRepository('team/app')).toEqual({ domain: undefined, path: 'team/app' });
    expect(isValidDomain('registry.example.com:5000')).toBe(true);
    expect(isValidDomain('[::1]')).toBe(true);
    expect(isValidDomain('team')).toBe(false);
    expect(isValidDomain('evil host')).toBe(false);
  });
});

describe('validateReference', () => {
  it('passes a plain reference', () => {
    expect(() => validateReference({ repository: 'registry.example.com/team/app', tag: '1.2.3', digest: D })).not.toThrow();
    expect(() => validateReference({ repository: 'registry.example.com/team/app', tag: '1.2.3', digest: undefined })).not.toThrow();
  });

  it('names the offending field, and shortens long values', () => {
    const e = expectRefusal(() => validateReference({ repository: 'team/app', tag: `1.0\n${'x'.repeat(500)}` }), 'invalid_reference', 400);
    expect(e.details!.field).toBe('tag');
    expect((e.details!.value as string).length).toBeLessThanOrEqual(81);
    expect(expectRefusal(() => validateReference({ repository: '../../etc', tag: '1' }), 'invalid_reference', 400).details!.field).toBe('repository');
    expect(expectRefusal(() => validateReference({ repository: 'app', tag: '1', digest: 'sha256:abc' }), 'invalid_reference', 400).details!.field).toBe('digest');
  });
});

describe('parseImageReference', () => {
  it('splits host, path, tag and digest', () => {
    expect(parseImageReference('harbor.example.com/library/app:1.2.3')).toEqual({
      repository: 'harbor.example.com/library/app',
      domain: 'harbor.example.com',
      path: 'library/app',
      tag: '1.2.3',
      digest: undefined,
    });
    expect(parseImageReference(`localhost:5000/team/app:v1@${D}`)).toEqual({
      repository: 'localhost:5000/team/app',
      domain: 'localhost:5000',
      path: 'team/app',
      tag: 'v1',
      digest: D,
    });
    expect(parseImageReference(`registry:5000/app@${D}`)).toMatchObject({ repository: 'registry:5000/app', tag: undefined, digest: D });
    expect(parseImageReference('team/app')).toEqual({ repository: 'team/app', domain: undefined, path: 'team/app', tag: undefined, digest: undefined });
  });

  it.each([
    ['registry.example.com/../../etc:1.0', 'repository'],
    ['registry.example.com/app:1.0\n  evil: true', 'tag'],
    ['registry.example.com/app:1.0 # {"$imagepolicy": "x"}', 'tag'],
    ['registry.example.com/App:1.0', 'repository'],
    ['registry.example.com/app:1.0@sha256:abc', 'digest'],
    ['registry.example.com/app:1.0@' + D + '@' + D, 'digest'],
    ['registry.example.com/app:', 'tag'],
    ['registry.example.com/app:1:2', 'repository'],
    ['', 'repository'],
  ])('refuses %j (%s)', (ref, field) => {
    expect(expectRefusal(() => parseImageReference(ref), 'invalid_reference', 400).details!.field).toBe(field);
  });
});
