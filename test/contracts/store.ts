import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../core/store/migrate.ts';
import type { Store } from '../../core/store/types.ts';
import { uniqueName, waitFor } from '../helpers/index.ts';

/** The contract every store adapter keeps. `makeStore` gives a store on a fresh schema. */
export function storeContract(name: string, makeStore: () => Promise<Store>): void {
  describe(`store contract: ${name}`, () => {
    let store: Store;
    beforeAll(async () => {
      store = await makeStore();
    });
    afterAll(async () => {
      await store.close();
    });

    it('answers ping and parameterised queries', async () => {
      expect(await store.ping()).toBe(true);
      const { rows } = await store.query<{ n: number; s: string }>('select $1::int as n, $2::text as s', [41, 'x']);
      expect(rows).toEqual([{ n: 41, s: 'x' }]);
    });

    it('migrate applies each migration once, in id order', async () => {
      const migrations = [
        { id: '0002_add', sql: "insert into things (name) values ('second')" },
        { id: '0001_create', sql: 'create table things (id serial primary key, name text not null unique)' },
      ];
      expect(await migrate(store, migrations)).toEqual(['0001_create', '0002_add']);
      expect(await migrate(store, migrations)).toEqual([]);
      const { rows } = await store.query<{ name: string }>('select name from things');
      expect(rows.map((r) => r.name)).toEqual(['second']);
    });

    it('a failed migration leaves nothing applied', async () => {
      await expect(
        migrate(store, [
          { id: '0101_ok', sql: 'create table half (id int)' },
          { id: '0102_bad', sql: 'create tabel oops' },
        ]),
      ).rejects.toMatchObject({ retriable: false });
      const { rows } = await store.query("select to_regclass('half') as t");
      expect(rows[0]!.t).toBeNull();
    });

    it('transaction commits on success and rolls back on error', async () => {
      await expectCommitAndRollback(store);
    });

    it('SQL errors are typed and not retriable', async () => {
      await expect(store.query('select * from no_such_table')).rejects.toMatchObject({
        code: 'STORE_SQL_42P01',
        retriable: false,
      });
    });

    it('jsonb and timestamptz round-trip', async () => {
      const { rows } = await store.query<{ j: unknown; t: Date }>("select $1::jsonb as j, '2026-01-02T03:04:05Z'::timestamptz as t", [
        JSON.stringify({ a: [1, 'b'] }),
      ]);
      expect(rows[0]!.j).toEqual({ a: [1, 'b'] });
      expect(new Date(rows[0]!.t).toISOString()).toBe('2026-01-02T03:04:05.000Z');
    });

    it('bigint and numeric come back as strings, exactly, as node-postgres returns them', async () => {
      const { rows } = await store.query<{ b: unknown; n: unknown; a: unknown }>('select $1::bigint as b, 2.50::numeric as n, $2::bigint[] as a', [
        '9007199254740993',
        [1, 2],
      ]);
      expect(rows[0]).toEqual({ b: '9007199254740993', n: '2.50', a: ['1', '2'] });
    });

    it('listen receives NOTIFY payloads until stopped', async () => {
      // Channels are database-wide, so each run takes its own.
      const channel = uniqueName('ch').toLowerCase();
      const got: string[] = [];
      const stop = await store.listen(channel, (payload) => got.push(payload));
      await store.query('select pg_notify($1, $2)', [channel, 'one']);
      await store.transaction(async (tx) => {
        await tx.query('select pg_notify($1, $2)', [channel, 'two']);
      });
      await waitFor(() => got.length === 2, { what: 'two notifications' });
      expect(got).toEqual(['one', 'two']);

      // A second listener on the same channel shows when later payloads have been delivered,
      // so that the absence checked below is not just slowness.
      const witness: string[] = [];
      const stopWitness = await store.listen(channel, (payload) => witness.push(payload));
      await stop();
      await store.query('select pg_notify($1, $2)', [channel, 'after-stop']);
      await waitFor(() => witness.includes('after-stop'), { what: 'the witness to get the last payload' });
      await stopWitness();
      expect(got).toEqual(['one', 'two']);
    });

    it('listen refuses channel names it cannot quote safely', async () => {
      await expect(store.listen('Bad"; drop', () => {})).rejects.toMatchObject({ code: 'STORE_BAD_CHANNEL' });
    });
  });
}

/** Every dialect: a transaction commits when its function resolves, and rolls back when it throws. Leaves table tx_test with one row. */
export async function expectCommitAndRollback(store: Store): Promise<void> {
  await store.query('create table tx_test (v text)');
  await store.transaction(async (tx) => {
    await tx.query("insert into tx_test values ('kept')");
  });
  await expect(
    store.transaction(async (tx) => {
      await tx.query("insert into tx_test values ('lost')");
      throw new Error('boom');
    }),
  ).rejects.toThrow('boom');
  const { rows } = await store.query<{ v: string }>('select v from tx_test');
  expect(rows.map((r) => r.v)).toEqual(['kept']);
}
