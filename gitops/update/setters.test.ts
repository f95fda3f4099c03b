import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { applySetters, currentValues, fieldAllowed } from './setters.ts';

/**
 * Golden cases in testdata/<case>/: input.yaml, case.json (policy, ref, allowFields) and
 * expected.yaml. UPDATE_GOLDEN=1 writes expected.yaml; review the diff before committing.
 */
const DIR = new URL('./testdata/', import.meta.url);
const cases = readdirSync(DIR);

describe('image setters: golden cases', () => {
  for (const name of cases) {
    it(name, () => {
      const input = readFileSync(new URL(`${name}/input.yaml`, DIR), 'utf8');
      const c = JSON.parse(readFileSync(new URL(`${name}/case.json`, DIR), 'utf8'));
      const { text } = applySetters(input, c.policy, c.ref, c.allowFields ? { allowFields: c.allowFields } : {});
      const expectedUrl = new URL(`${name}/expected.yaml`, DIR);
      if (process.env.UPDATE_GOLDEN) writeFileSync(expectedUrl, text);
      expect(existsSync(expectedUrl), `${name}/expected.yaml missing: UPDATE_GOLDEN=1`).toBe(true);
      expect(text).toBe(readFileSync(expectedUrl, 'utf8'));
      // The output is still YAML with the same documents.
      expect(parseAllDocuments(text).length).toBe(parseAllDocuments(input).length);
    });
  }
});

describe('image setters', () => {
  const yaml = 'image: repo/app:1.0.0 # {"$imagepolicy": "app"}\nother: x # a comment\n';

  it('changes only the marked bytes', () => {
    const { text, changes } = applySetters(yaml, 'app', { repository: 'repo/app', tag: '1.1.0' });
    expect(text).toBe('image: repo/app:1.1.0 # {"$imagepolicy": "app"}\nother: x # a comment\n');
    expect(changes).toEqual([{ field: 'image', policy: 'app', kind: 'image', from: 'repo/app:1.0.0', to: 'repo/app:1.1.0' }]);
  });

  it('leaves other policies alone and reports no change when the value is already there', () => {
    expect(applySetters(yaml, 'other', { repository: 'repo/app', tag: '9.9.9' }).changes).toEqual([]);
    expect(applySetters(yaml, 'app', { repository: 'repo/app', tag: '1.0.0' }).changes).toEqual([]);
  });

  it.each([
    ['YAML in a tag', { repository: 'repo/app', tag: '1.0\n  evil: true' }],
    ['a comment in a tag', { repository: 'repo/app', tag: '1.0 # {"$imagepolicy": "x"}' }],
    ['path traversal in a repository', { repository: '../../etc/passwd', tag: '1.0' }],
    ['an upper-case repository', { repository: 'Repo/App', tag: '1.0' }],
    ['a bad digest', { repository: 'repo/app', tag: '1.0', digest: 'md5:abc' }],
    ['a too-long tag', { repository: 'repo/app', tag: 'x'.repeat(129) }],
  ])('refuses %s and changes nothing', (_what, ref) => {
    expect(() => applySetters(yaml, 'app', ref)).toThrow(expect.objectContaining({ code: 'invalid_reference', status: 400 }));
  });

  it('refuses YAML that does not parse', () => {
    expect(() => applySetters('a: [1,\n', 'app', { repository: 'repo/app', tag: '1' })).toThrow(expect.objectContaining({ code: 'invalid_yaml' }));
  });

  it('reads the current values of a policy', () => {
    expect(currentValues(yaml, 'app')).toEqual([{ kind: 'image', value: 'repo/app:1.0.0' }]);
  });

  it('field allow-lists take * for one segment and ** for any', () => {
    expect(fieldAllowed('spec.template.spec.containers.0.image', ['spec.template.spec.containers.*.image'])).toBe(true);
    expect(fieldAllowed('data.AIRFLOW_IMAGE', ['spec.**'])).toBe(false);
    expect(fieldAllowed('spec.a.b.image', ['spec.**.image'])).toBe(true);
    expect(fieldAllowed('anything', undefined)).toBe(true);
  });
});
