import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../core/store/migrate.ts';
import type { Store } from '../../core/store/types.ts';

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
  });
}
