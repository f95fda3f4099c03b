import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.ts';
import { createRefusalLog } from './refusals.ts';

/** A logger whose JSON lines land in `lines`. */
function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger({ level: 'info' }, stream), lines };
}

describe('refusal log', () => {
  it('logs a refusal once per receiver and reason per window, saying how many it did not log, and keeps counting', () => {
    let now = 1_000_000;
    const { logger, lines } = capture();
    const refusals = createRefusalLog({ logger, windowMs: 60_000, now: () => now });
    const bad = { receiver: 'registry/distribution', reason: 'bad_token', status: 401 };
    for (let i = 0; i < 5; i++) {
      refusals.record(bad);
      now += 1_000;
    }
    refusals.record({ receiver: 'registry/distribution', reason: 'invalid_payload', status: 400 });
    now += 1_000;
    refusals.record({ receiver: 'git', reason: 'bad_token', status: 401 });
    const warned = () => lines.filter((l) => l.component === 'webhooks');
    expect(warned().map((l) => [l.receiver, l.reason, l.suppressed])).toEqual([
      ['registry/distribution', 'bad_token', 0],
      ['registry/distribution', 'invalid_payload', 0],
      ['git', 'bad_token', 0],
    ]);
    expect(warned()[0]).toMatchObject({ level: 'warn', status: 401 });

    // The next window's first refusal is logged again, with the four the last window swallowed.
    now += 60_000;
    refusals.record(bad);
    expect(warned().at(-1)).toMatchObject({ receiver: 'registry/distribution', reason: 'bad_token', suppressed: 4 });
    expect(warned()).toHaveLength(4);

    const listed = refusals.list();
    expect(listed[0]).toEqual({ ...bad, count: 6, firstAt: 1_000_000, lastAt: now });
    expect(listed.map((r) => `${r.receiver} ${r.reason}`)).toEqual(['registry/distribution bad_token', 'git bad_token', 'registry/distribution invalid_payload']);
  });

  it('keeps at most maxKept pairs, dropping the least recent', () => {
    let now = 0;
    const refusals = createRefusalLog({ logger: createLogger({ level: 'silent' }), maxKept: 3, now: () => ++now });
    for (const receiver of ['a', 'b', 'c', 'd']) refusals.record({ receiver, reason: 'bad_token', status: 401 });
    expect(refusals.list().map((r) => r.receiver)).toEqual(['d', 'c', 'b']);
  });

  it('logs no secret: only the receiver, the code and the status', () => {
    const { logger, lines } = capture();
    const refusals = createRefusalLog({ logger });
    refusals.record({ receiver: 'git', reason: 'bad_signature', status: 401 });
    expect(Object.keys(lines[0]!).sort()).toEqual(['component', 'level', 'msg', 'name', 'pid', 'reason', 'receiver', 'status', 'suppressed', 'time', 'windowMs'].sort());
  });
});
