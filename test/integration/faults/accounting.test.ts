import { describe, expect, it } from 'vitest';
import { account, type Load } from '../../helpers/faults.ts';

/**
 * The fault suite's accounting must be able to fail: a lost, repeated or reordered event
 * has to show in the report (the cases assert on it against real processes).
 */
describe('fault accounting', () => {
  const load = (acked: number[]): Load => ({
    tag: 't',
    acked: new Set(acked.map((n) => `t-${n}`)),
    sent: () => 6,
    failed: () => 6 - acked.length,
    done: Promise.resolve(),
    stop: () => undefined,
  });
  const d = (n: number, user: string, seq: number) => ({ messageId: `t-${n}`, userId: user, properties: { seq } });

  it('counts lost, duplicates and per-user order violations; ignores other runs', () => {
    const report = account(load([0, 1, 2, 3, 4]), [
      d(0, 'a', 0),
      d(2, 'a', 2),
      d(1, 'a', 1), // behind seq 2 of the same user
      d(3, 'b', 0),
      d(0, 'a', 0), // a repeat is a duplicate, not a violation
      { messageId: 'other-9', userId: 'a', properties: { seq: 0 } },
    ]);
    expect(report).toEqual({ sent: 6, acked: 5, delivered: 4, duplicates: 1, lost: ['t-4'], orderViolations: 1 });
  });

  it('an event delivered but never acknowledged is not lost', () => {
    expect(account(load([]), [d(5, 'a', 0)])).toMatchObject({ acked: 0, delivered: 1, lost: [], orderViolations: 0 });
  });
});
