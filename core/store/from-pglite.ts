import { existsSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { OrreryError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { migrate, type Migration } from './migrate.ts';
import type { SqliteStore } from './sqlite.ts';
import type { Queryable } from './types.ts';

/** The tables the embedded store held on PGlite, in an order that keeps references valid. */
const TABLES = ['control_plane_versions', 'sink_dead_letters', 'router_dead_letters', 'sink_parked_users', 'sink_parked_events', 'deploys', 'gitops_sync'];

const MARKER = 'moving_pglite_store';

/** SQLite's limit on one statement's parameters (SQLITE_MAX_VARIABLE_NUMBER). */
const MAX_PARAMS = 32_766;

/**
 * Every domain's schema. Imported here, only when a PGlite store is found, because the copy
 * needs each table to exist with its SQLite types before the rows go in, and each domain
 * creates its tables lazily on first use (router/dead-letters.ts, sinks/park.ts, …).
 */
async function allMigrations(): Promise<Migration[]> {
  const [cp, router, park, deploys, sync] = await Promise.all([
    import('../control-plane-pg.ts'),
    import('../../router/dead-letters.ts'),
    import('../../sinks/park.ts'),
    import('../../gitops/deploys.ts'),
    import('../../gitops/controller/sync.ts'),
  ]);
  return [...cp.CONTROL_PLANE_MIGRATIONS, ...router.ROUTER_DEAD_LETTER_MIGRATIONS, ...park.PARK_MIGRATIONS, ...deploys.DEPLOY_MIGRATIONS, ...sync.SYNC_STATUS_MIGRATIONS];
}

async function count(q: Queryable, table: string): Promise<number> {
  const { rows } = await q.query<{ n: number }>(`select count(*) as n from ${table}`);
  return Number(rows[0]?.n ?? 0);
}

/**
 * Moves the embedded store of an older Orrery (PGlite, a Postgres data directory at `from`)
 * into the SQLite store: the control plane with every version, the dead letters of both
 * stages, parked events, deploys and the GitOps sync status, each row with its id, in one
 * transaction. The old directory is then renamed `<from>.migrated` (kept, not deleted: the
 * log says so). PGlite is loaded for this alone.
 *
 * As for the bus's move (core/bus/sqlite.ts migrateSegmentLog): opening PGlite takes its
 * lock, so an older Orrery still running on it stops this with STORE_LOCKED; the copy's
 * transaction writes a marker, cleared after the rename, so a start that died in between
 * only renames; and a PGlite store beside a SQLite store that already holds data, with no
 * marker, is refused (STORE_MIGRATION_CONFLICT) rather than merged or dropped.
 *
 * @example await movePgliteStore({ from: join(dataDir, 'store'), store, logger });
 */
export async function movePgliteStore(opts: { from: string; store: SqliteStore; logger: Logger }): Promise<Record<string, number> | undefined> {
  if (!existsSync(opts.from)) return undefined;
  const { store } = opts;
  await store.query("create table if not exists orrery_moves (what text primary key, at text not null default (now()))");
  const marked = (await store.query('select 1 from orrery_moves where what = $1', [MARKER])).rowCount > 0;
  let copied: Record<string, number> | undefined;
  if (!marked) {
    await migrate(store, await allMigrations());
    for (const table of TABLES) {
      if ((await count(store, table)) > 0) {
        throw new OrreryError(
          'STORE_MIGRATION_CONFLICT',
          `${opts.from} holds the embedded store of an older Orrery (PGlite), and the SQLite store already holds data (${table}); they cannot be merged: move one of them out of the data dir`,
          { retriable: false },
        );
      }
    }
    const { createPgliteStore } = await import('./pglite.ts');
    const old = await createPgliteStore({ dir: opts.from, logger: opts.logger });
    try {
      copied = await copyTables(old, store);
    } finally {
      await old.close();
    }
  }
  let kept = `${opts.from}.migrated`;
  if (existsSync(kept)) kept = `${kept}-${Date.now()}`;
  await rename(opts.from, kept);
  await store.query('delete from orrery_moves where what = $1', [MARKER]);
  const summary = copied ? ` (${Object.entries(copied).map(([t, n]) => `${t}: ${n}`).join(', ')})` : '';
  opts.logger.child({ component: 'store', adapter: 'sqlite' }).info(
    { from: opts.from, kept, rows: copied },
    `store: moved the embedded PGlite store at ${opts.from} into SQLite${summary}; the old directory is kept at ${kept}, and can be deleted`,
  );
  return copied;
}

/** Every row of the known tables, with the columns both sides have, in one SQLite transaction. */
async function copyTables(from: Queryable, store: SqliteStore): Promise<Record<string, number>> {
  const present = new Set(
    (await from.query<{ table_name: string }>("select table_name from information_schema.tables where table_schema = current_schema()")).rows.map((r) => r.table_name),
  );
  const plans: Array<{ table: string; columns: string[]; rows: Array<Record<string, unknown>> }> = [];
  for (const table of TABLES) {
    if (!present.has(table)) continue;
    const source = await from.query<{ column_name: string; data_type: string }>(
      'select column_name, data_type from information_schema.columns where table_schema = current_schema() and table_name = $1',
      [table],
    );
    const target = new Set((await store.query<{ name: string }>(`select name from pragma_table_info('${table}')`)).rows.map((r) => r.name));
    const columns = source.rows.filter((c) => target.has(c.column_name)).map((c) => c.column_name);
    const json = new Set(source.rows.filter((c) => c.data_type === 'jsonb' || c.data_type === 'json').map((c) => c.column_name));
    const { rows } = await from.query<Record<string, unknown>>(`select ${columns.join(', ')} from ${table} order by 1`);
    // jsonb comes back parsed: written back as its JSON text (a string value too, quoted).
    for (const row of rows) for (const c of json) if (row[c] !== null && row[c] !== undefined) row[c] = JSON.stringify(row[c]);
    plans.push({ table, columns, rows });
  }
  const copied: Record<string, number> = {};
  await store.transaction(async (tx) => {
    for (const { table, columns, rows } of plans) {
      const perStatement = Math.max(1, Math.floor(MAX_PARAMS / columns.length));
      for (let i = 0; i < rows.length; i += perStatement) {
        const chunk = rows.slice(i, i + perStatement);
        const values = chunk.map((_, r) => `(${columns.map((_, c) => `$${r * columns.length + c + 1}`).join(', ')})`).join(', ');
        await tx.query(`insert into ${table} (${columns.join(', ')}) values ${values}`, chunk.flatMap((row) => columns.map((c) => row[c])));
      }
      copied[table] = rows.length;
    }
    // The dead letters' shared id counter (sinks/dead-letters.ts) goes on after the moved ids.
    await tx.query(`update dead_letter_ids set next = max(next,
      (select coalesce(max(id), 0) + 1 from sink_dead_letters), (select coalesce(max(id), 0) + 1 from router_dead_letters))`);
    await tx.query('insert into orrery_moves (what) values ($1)', [MARKER]);
  });
  return copied;
}
