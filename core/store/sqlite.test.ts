import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expectCommitAndRollback } from '../../test/contracts/store.ts';
import { testLogger } from '../../test/helpers/index.ts';
import { migrate } from './migrate.ts';
import { createSqliteStore, numberedPlaceholders, type SqliteStore } from './sqlite.ts';

/** The store on SQLite: the contract of ./types.ts, in SQLite's dialect, and what it does for Postgres-style SQL. */
let dir: string;
let store: SqliteStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'orrery-store-sqlite-'));
  store = createSqliteStore({ file: join(dir, 'orrery.sqlite'), logger: testLogger() });
});

afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('numberedPlaceholders', () => {
  it('numbers $n as ?n outside literals, identifiers and comments', () => {
    expect(numberedPlaceholders(`select $2, $1, '$1 it''s', "$3", x -- $4\n, $10`)).toBe(`select ?2, ?1, '$1 it''s', "$3", x -- $4\n, ?10`);
  });
});

describe('sqlite store', () => {
  it('binds $n as Postgres does: reordered, repeated, and never inside a literal', async () => {
    expect(await store.ping()).toBe(true);
    const { rows } = await store.query('select $2 as b, $1 as a, $2 as c, \'$1\' as lit', ['x', 'y']);
    expect({ ...rows[0] }).toEqual({ b: 'y', a: 'x', c: 'y', lit: '$1' });
  });

  it('migrate applies each migration once, in id order, from its SQLite text; a failed one leaves nothing', async () => {
    const migrations = [
      { id: '0002_add', sql: 'unused', sqlite: "insert into things (name) values ('second')" },
      { id: '0001_create', sql: 'unused', sqlite: 'create table things (id integer primary key, name text not null unique); create index things_name on things (name)' },
    ];
    expect(await migrate(store, migrations)).toEqual(['0001_create', '0002_add']);
    expect(await migrate(store, migrations)).toEqual([]);
    expect((await store.query<{ name: string }>('select name from things')).rows.map((r) => r.name)).toEqual(['second']);
    await expect(
      migrate(store, [
        { id: '0101_ok', sql: 'unused', sqlite: 'create table half (id int)' },
        { id: '0102_bad', sql: 'unused', sqlite: 'create tabel oops' },
      ]),
    ).rejects.toMatchObject({ retriable: false });
    expect((await store.query("select name from sqlite_master where name = 'half'")).rows).toEqual([]);
    await expect(migrate(store, [{ id: '0200_pg_only', sql: 'create table x (id int)' }])).rejects.toThrow(/no SQLite variant/);
  });

  it('a transaction commits on success and rolls back on error; transactions never interleave', async () => {
    await expectCommitAndRollback(store);
    // Two transactions started together: each sees only its own writes until it commits.
    const seen = await Promise.all(
      ['a', 'b'].map((v) =>
        store.transaction(async (tx) => {
          await tx.query('insert into tx_test values ($1)', [v]);
          await new Promise((r) => setTimeout(r, 20));
          return (await tx.query<{ n: number }>('select count(*) as n from tx_test')).rows[0]!.n;
        }),
      ),
    );
    expect(seen).toEqual([2, 3]);
    expect((await store.query<{ v: string }>('select v from tx_test order by rowid')).rows.map((r) => r.v)).toEqual(['kept', 'a', 'b']);
  });

  it('SQL errors are typed and not retriable', async () => {
    await expect(store.query('select * from no_such_table')).rejects.toMatchObject({ code: 'STORE_SQLITE_1', retriable: false });
  });

  it('json columns come back parsed; Dates bind as ISO text; now() is ISO text that Date reads back', async () => {
    await store.query("create table docs (id integer primary key, doc jsonb not null, at text not null default (now()))");
    const when = new Date('2026-01-02T03:04:05.678Z');
    // A Date first: node:sqlite alone would bind it as NULL.
    await store.query('insert into docs (at, doc) values ($1, $2)', [when, { a: [1, 'b'] }]);
    await store.query('insert into docs (doc) values ($1)', [JSON.stringify({ c: true })]);
    const { rows } = await store.query<{ doc: unknown; at: string }>('select doc, at from docs order by id');
    expect(rows.map((r) => r.doc)).toEqual([{ a: [1, 'b'] }, { c: true }]);
    expect(new Date(rows[0]!.at).toISOString()).toBe(when.toISOString());
    expect(rows[1]!.at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('rowCount counts the rows a statement changed or returned', async () => {
    await store.query('create table kv (k text primary key, v text)');
    expect((await store.query("insert into kv values ('a', '1'), ('b', '2')")).rowCount).toBe(2);
    expect((await store.query('insert into kv values ($1, $2) on conflict do nothing', ['a', 'x'])).rowCount).toBe(0);
    expect((await store.query('update kv set v = $1 returning k', ['z'])).rows.map((r) => r.k)).toEqual(['a', 'b']);
  });

  it('a notification from a transaction is delivered once it commits, never for a rollback', async () => {
    const got: string[] = [];
    const stop = await store.listen('orrery_changes', (p) => got.push(p));
    await store.transaction(async (tx) => {
      tx.notify('orrery_changes', 'one');
      expect(got).toEqual([]);
    });
    await store
      .transaction(async (tx) => {
        tx.notify('orrery_changes', 'rolled back');
        throw new Error('no');
      })
      .catch(() => undefined);
    store.notify('orrery_changes', 'two');
    await stop();
    store.notify('orrery_changes', 'after stop');
    expect(got).toEqual(['one', 'two']);
    await expect(store.listen('Bad"; drop', () => {})).rejects.toMatchObject({ code: 'STORE_BAD_CHANNEL' });
  });
});
