import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Envelope } from '../../core/envelope.ts';
import { createPgStore } from '../../core/store/pg.ts';
import { createSqliteStore } from '../../core/store/sqlite.ts';
import type { Store } from '../../core/store/types.ts';
import { listDeadLetters } from '../../sinks/dead-letters.ts';
import { createPark } from '../../sinks/park.ts';
import { serviceEnv, testLogger, uniqueName } from '../helpers/index.ts';

const event = (user: string, n: number): Envelope =>
  ({ v: 1, sourceId: 'web', type: 'track', event: 'E', messageId: `${user}-${n}`, userId: user, properties: { n }, receivedAt: new Date().toISOString() }) as unknown as Envelope;
const fresh = (e: Envelope) => ({ event: e, attempts: 0, firstAttemptAt: undefined });
const ns = async (store: Store, user: string) => (await createPark(store, 'hook').head(user, 1000)).map((p) => (p.event.properties as { n: number }).n);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The park's contract (sinks/park.ts), on each store adapter. */
function parkContract(name: string, open: () => Promise<Store>, opts: { concurrentSessions: boolean }) {
  describe(`sink park on ${name}`, () => {
    const stores: Store[] = [];
    afterAll(async () => {
      for (const s of stores.splice(0)) await s.close();
    });
    const store = async () => {
      const s = await open();
      stores.push(s);
      return s;
    };

    it('keeps a parked user\'s events in order, once per messageId, and appends only behind users still parked', async () => {
      const s = await store();
      const park = createPark(s, 'hook');
      await park.park('web:a', [{ event: event('a', 1), attempts: 3, firstAttemptAt: 1_700_000_000_000, lastError: 'HTTP 500' }, fresh(event('a', 2))]);
      // A batch read again after a crash parks the same events again: nothing doubles.
      await park.park('web:a', [{ event: event('a', 1), attempts: 3, firstAttemptAt: 1_700_000_000_000 }, fresh(event('a', 2))]);
      expect(await park.parkedAmong(['web:a', 'web:b'])).toEqual(new Set(['web:a']));
      const appended = await park.appendIfParked(new Map([['web:a', [event('a', 3), event('a', 2)]], ['web:b', [event('b', 1)]]]));
      expect(appended).toEqual(new Set(['web:a']));
      expect(await ns(s, 'web:a')).toEqual([1, 2, 3]);
      expect(await ns(s, 'web:b')).toEqual([]);
      const [first] = await park.head('web:a', 1);
      expect(first).toMatchObject({ attempts: 3, firstAttemptAt: 1_700_000_000_000, lastError: 'HTTP 500' });
      // Another destination's park is its own.
      expect(await createPark(s, 'other').parkedAmong(['web:a'])).toEqual(new Set());
      expect(await park.size()).toEqual({ users: 1, events: 3 });
    });

    it('unparks a user only once its last event has left, and remembers failed tries', async () => {
      const s = await store();
      const park = createPark(s, 'hook');
      await park.park('web:u', [fresh(event('u', 1)), fresh(event('u', 2))]);
      const [one, two] = await park.head('web:u', 10);
      await park.failed(one!.id, 7, 1_700_000_000_000, 'HTTP 503');
      expect((await park.head('web:u', 1))[0]).toMatchObject({ attempts: 7, firstAttemptAt: 1_700_000_000_000, lastError: 'HTTP 503' });
      await park.remove(one!.id);
      expect(await park.unparkIfEmpty('web:u')).toBe(false);
      await park.deadLetter(two!.id, { destinationId: 'hook', event: two!.event, attempts: 9, lastError: 'HTTP 500', httpStatus: 500, firstAttemptAt: 1_700_000_000_000 });
      const letters = await listDeadLetters(s, { destinationId: 'hook' });
      expect(letters.map((l) => [l.messageId, l.attempts])).toEqual([['u-2', 9]]);
      expect(await park.unparkIfEmpty('web:u')).toBe(true);
      expect(await park.parkedAmong(['web:u'])).toEqual(new Set());
      expect(await park.appendIfParked(new Map([['web:u', [event('u', 3)]]]))).toEqual(new Set());
      expect(await park.size()).toEqual({ users: 0, events: 0 });
    });

    it('lets one process at a time drain a user: the lease holds until released or lapsed', async () => {
      const s = await store();
      const a = createPark(s, 'hook', { owner: 'a', leaseMs: 400 });
      const b = createPark(s, 'hook', { owner: 'b', leaseMs: 400 });
      await a.park('web:x', [fresh(event('x', 1))]);
      await a.park('web:y', [fresh(event('y', 1))]);
      expect(new Set(await a.claim(10))).toEqual(new Set(['web:x', 'web:y']));
      expect(await b.claim(10)).toEqual([]);
      expect(new Set(await a.claim(10))).toEqual(new Set(['web:x', 'web:y']));
      await a.release();
      expect(new Set(await b.claim(1))).toHaveProperty('size', 1);
      expect(await b.claim(10)).toHaveLength(2);
      // b stops renewing: once its lease lapses, a takes over.
      expect(await a.claim(10)).toEqual([]);
      await sleep(600);
      expect(await a.claim(10)).toHaveLength(2);
    });

    it('renews its own leases before it takes a free user, however much older that one is', async () => {
      const s = await store();
      const a = createPark(s, 'hook', { owner: 'a' });
      const b = createPark(s, 'hook', { owner: 'b' });
      await a.park('web:old', [fresh(event('old', 1))]);
      await a.park('web:new', [fresh(event('new', 1))]);
      expect(await b.claim(1)).toEqual(['web:old']);
      expect(await a.claim(1)).toEqual(['web:new']);
      await b.release();
      // Within its limit, a keeps draining the user it holds rather than leave it to lapse.
      expect(await a.claim(1)).toEqual(['web:new']);
      expect(await b.claim(1)).toEqual(['web:old']);
    });

    if (opts.concurrentSessions) {
      it('never loses an event when a batch appends while the drainer unparks (row lock)', async () => {
        const s = await store();
        const park = createPark(s, 'hook');
        for (let round = 0; round < 40; round++) {
          const user = `web:r${round}`;
          await park.park(user, [fresh(event(`r${round}`, 0))]);
          const [only] = await park.head(user, 1);
          await park.remove(only!.id);
          const [appended, unparked] = await Promise.all([park.appendIfParked(new Map([[user, [event(`r${round}`, 1)]]])), park.unparkIfEmpty(user)]);
          const left = await ns(s, user);
          const stillParked = (await park.parkedAmong([user])).has(user);
          if (appended.has(user)) {
            // The append took the row lock first: the user stays parked, with the event.
            expect(unparked).toBe(false);
            expect([left, stillParked]).toEqual([[1], true]);
          } else {
            expect(unparked).toBe(true);
            expect([left, stillParked]).toEqual([[], false]);
          }
        }
      });
    }
  });
}

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

parkContract('postgres', async () => createPgStore({ url: serviceEnv('DATABASE_URL'), schema: uniqueName('pk').toLowerCase() }), { concurrentSessions: true });
parkContract(
  'sqlite',
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orrery-park-'));
    dirs.push(dir);
    return createSqliteStore({ file: join(dir, 'orrery.sqlite'), logger: testLogger() });
  },
  { concurrentSessions: false },
);
