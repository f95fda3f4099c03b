import { describe, expect, it } from 'vitest';
import { createEventBuffer, createRing, toDebugEvent } from './debugger.ts';

const ev = (sourceId: string, n: number) => ({ sourceId, partition: 0, offset: String(n), at: n, event: { n }, valid: true });

describe('debugger buffers', () => {
  it('a ring keeps the newest items, oldest first', () => {
    const ring = createRing<number>(3);
    expect(ring.toArray()).toEqual([]);
    for (let i = 1; i <= 7; i++) ring.push(i);
    expect(ring.toArray()).toEqual([5, 6, 7]);
    expect(ring.size).toBe(3);
  });

  it('keeps the last N events per source, merges sources by arrival, and follows a cursor', () => {
    const buffer = createEventBuffer({ perSource: 2 });
    const seen: number[] = [];
    const unsubscribe = buffer.subscribe((e) => seen.push(e.seq));
    for (let i = 1; i <= 3; i++) buffer.add(ev('web', i));
    buffer.add(ev('app', 4));
    unsubscribe();
    buffer.add(ev('web', 5));
    expect(buffer.list({ sourceId: 'web' }).map((e) => e.offset)).toEqual(['3', '5']);
    expect(buffer.list().map((e) => e.seq)).toEqual([3, 4, 5]);
    expect(buffer.list({ afterSeq: 3 }).map((e) => e.seq)).toEqual([4, 5]);
    expect(buffer.list({ sourceId: 'nope' })).toEqual([]);
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(buffer.sources()).toEqual([
      { sourceId: 'app', events: 1, lastAt: 4 },
      { sourceId: 'web', events: 2, lastAt: 5 },
    ]);
  });

  it('bounds the number of sources: the least recently active goes', () => {
    const buffer = createEventBuffer({ perSource: 5, maxSources: 2 });
    buffer.add(ev('a', 1));
    buffer.add(ev('b', 2));
    buffer.add(ev('a', 3));
    buffer.add(ev('c', 4));
    expect(buffer.sources().map((s) => s.sourceId)).toEqual(['a', 'c']);
  });

  it('files poison under the source in its key, with the reason', () => {
    const e = toDebugEvent({ topic: 't', partition: 1, offset: '9', key: 'web:u1', value: Buffer.from('{oops'), headers: {}, timestamp: 5 });
    expect(e).toMatchObject({ sourceId: 'web', valid: false, event: '{oops', partition: 1, offset: '9', at: 5 });
    expect(e.error).toBeTruthy();
  });
});
