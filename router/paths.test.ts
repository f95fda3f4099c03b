import { describe, expect, it } from 'vitest';
import { deletePath, getPath, hasPath, setPath } from './paths.ts';

describe('paths', () => {
  const obj = { a: { b: { c: 1 }, n: null }, list: [1] };

  it('get and has follow own properties only', () => {
    expect(getPath(obj, 'a.b.c')).toBe(1);
    expect(getPath(obj, 'a.x.c')).toBeUndefined();
    expect(hasPath(obj, 'a.n')).toBe(true);
    expect(hasPath(obj, 'a.toString')).toBe(false);
    expect(getPath(obj, 'list.0')).toBeUndefined();
  });

  it('set and delete copy the path and never change the input', () => {
    const frozen = structuredClone(obj);
    const set = setPath(obj, 'a.b.d', 2);
    const del = deletePath(obj, 'a.b.c');
    expect(set.a.b).toEqual({ c: 1, d: 2 });
    expect(del.a.b).toEqual({});
    expect(obj).toEqual(frozen);
    expect(set.list).toBe(obj.list);
    expect(deletePath(obj, 'zz.y')).toBe(obj);
    expect(setPath({}, 'x.y', 1)).toEqual({ x: { y: 1 } });
  });

  it('refuses prototype paths and empty segments', () => {
    expect(() => setPath({}, '__proto__.polluted', 1)).toThrow(RangeError);
    expect(() => getPath({}, 'a..b')).toThrow(RangeError);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
