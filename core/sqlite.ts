import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

/**
 * Opens (creating when missing, with its directory) one of the embedded default's SQLite
 * files: the bus's log and the marks, the store, ingest's spool. The same settings for all:
 * WAL (readers never block the writer), `synchronous=FULL` (a commit is fsync'd before it
 * returns, which every 2xx and offset commit built on these files relies on), and a busy
 * timeout for a second connection to the same file. `schema` (DDL, `if not exists`) runs next.
 *
 * @example const db = openSqlite(join(dataDir, 'orrery.sqlite'), 'create table if not exists kv (…)');
 */
export function openSqlite(file: string, schema = ''): DatabaseSync {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = new DatabaseSync(file);
  db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000; ${schema}`);
  return db;
}
