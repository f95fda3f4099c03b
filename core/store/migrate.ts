import { dialectOf, type Store } from './types.ts';

export interface Migration {
  /** Sortable and unique, e.g. `0001_control_plane`. Never renamed once released. */
  id: string;
  /** For Postgres (pg, PGlite). */
  sql: string;
  /** For the SQLite store (./sqlite.ts), where types and DDL differ; required there. */
  sqlite?: string;
}

/** An arbitrary constant: the advisory lock that serialises migrators across processes. */
const MIGRATION_LOCK = 0x0_7272_7279;

/**
 * Applies the migrations not yet recorded, in id order, in one transaction (DDL is
 * transactional in Postgres, so a failed migration leaves nothing half-done), under
 * an advisory lock so that replicas starting together do not race. Returns the ids applied.
 *
 * @example await migrate(store, [{ id: '0001_init', sql: 'create table …' }]);
 */
export async function migrate(store: Store, migrations: Migration[]): Promise<string[]> {
  // Code-point order, not localeCompare: the same on every locale, and no ICU collator loaded (3 MiB).
  const sorted = [...migrations].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const ids = new Set<string>();
  for (const m of sorted) {
    if (ids.has(m.id)) throw new Error(`duplicate migration id ${m.id}`);
    ids.add(m.id);
  }
  // SQLite (./sqlite.ts): its one writer at a time is the lock, and each migration has its own text.
  const sqlite = dialectOf(store) === 'sqlite';
  if (sqlite) for (const m of sorted) if (m.sqlite === undefined) throw new Error(`migration ${m.id} has no SQLite variant`);
  return store.transaction(async (tx) => {
    if (!sqlite) await tx.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query(
      sqlite
        ? 'create table if not exists orrery_migrations (id text primary key, applied_at text not null default (now()))'
        : 'create table if not exists orrery_migrations (id text primary key, applied_at timestamptz not null default now())',
    );
    const { rows } = await tx.query<{ id: string }>('select id from orrery_migrations');
    const done = new Set(rows.map((r) => r.id));
    const applied: string[] = [];
    for (const m of sorted) {
      if (done.has(m.id)) continue;
      await tx.query(sqlite ? m.sqlite! : m.sql);
      await tx.query('insert into orrery_migrations (id) values ($1)', [m.id]);
      applied.push(m.id);
    }
    return applied;
  });
}
