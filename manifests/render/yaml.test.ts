import { describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { imagePolicyOf, markImage, toYaml, toYamlStream } from './yaml.ts';

describe('the YAML writer', () => {
  it('puts the head keys first and sorts the rest', () => {
    expect(toYaml({ spec: { b: 1, a: 2 }, metadata: { namespace: 'n', labels: {}, name: 'x' }, kind: 'K', apiVersion: 'v1' })).toBe(
      'apiVersion: v1\nkind: K\nmetadata:\n  name: x\n  namespace: n\n  labels: {}\nspec:\n  a: 2\n  b: 1\n',
    );
  });

  it('writes the image policy marker as a line comment, and only on marked holders', () => {
    const text = toYaml({ containers: [markImage({ name: 'a', image: 'r/a:1' }, 'team-a-airflow'), { name: 'b', image: 'redis:7' }] });
    expect(text).toContain('- name: a\n    image: r/a:1 # {"$imagepolicy": "team-a-airflow"}\n');
    expect(text).toContain('image: redis:7\n');
    expect(parseYaml(text)).toEqual({ containers: [{ name: 'a', image: 'r/a:1' }, { name: 'b', image: 'redis:7' }] });
  });

  it('keeps the marker out of JSON and of the object keys', () => {
    const c = markImage({ name: 'a', image: 'r/a:1' }, 'p');
    expect(Object.keys(c)).toEqual(['name', 'image']);
    expect(JSON.stringify(c)).toBe('{"name":"a","image":"r/a:1"}');
    expect(imagePolicyOf(c)).toBe('p');
    expect(imagePolicyOf(structuredClone(c))).toBeUndefined();
  });

  it('writes multi-line strings as block literals and quotes what YAML would misread', () => {
    const text = toYaml({ data: { 'a.cfg': '[core]\nx = 1\n' }, env: [{ name: 'N', value: '8080' }, { name: 'B', value: 'true' }] });
    expect(text).toContain('a.cfg: |\n    [core]\n    x = 1\n');
    expect(text).toContain('value: "8080"');
    expect(text).toContain('value: "true"');
  });

  it('drops undefined keys, never folds long lines, and refuses what YAML cannot say', () => {
    const long = `x/${'y'.repeat(200)}:1`;
    expect(toYaml({ a: undefined, image: long })).toBe(`image: ${long}\n`);
    expect(() => toYaml({ a: Number.NaN })).toThrow(/non-finite/);
    expect(() => toYaml({ a: [undefined] })).toThrow(/undefined item/);
  });

  it('streams documents with ---', () => {
    const s = toYamlStream([{ a: 1 }, { b: 2 }]);
    expect(s).toBe('---\na: 1\n---\nb: 2\n');
    expect(parseAllDocuments(s)).toHaveLength(2);
  });
});
