import { existsSync, rmSync } from 'node:fs';
import type { DatabaseSync } from 'node:sqlite';
import { openSqlite } from '../sqlite.ts';
import { createLocalBuckets } from './token-bucket.ts';
import type { Logger } from '../logger.ts';
import type { Cache, TakeResult, TokenBucket } from './types.ts';

/**
 * The embedded default's cache: keys with a TTL in one SQLite file (Node's `node:sqlite`,
 * WAL, `synchronous=FULL`), so that the router's dedup marks and the sinks' delivered
 * marks survive a crash. A call resolves once its marks are committed and fsync'd, and
 * both stages write their marks before they commit the offsets that the marks describe,
 * so a batch read again after `kill -9` finds the marks of everything it already routed
 * or delivered. Rate-limit buckets stay in memory: a restart refilling them is harmless.
 *
 * The file belongs to one process, like the rest of the data dir (its lock guards it).
 *
 * @example const cache = createSqliteCache({ path: join(dataDir, 'cache.sqlite') });
 */
export function createSqliteCache(opts: { path: string; now?: () => number; sweepIntervalMs?: number }): Cache {
  const now = opts.now ?? Date.now;
  const db = openKv(opts.path);
  // An existing live key is left alone; an expired one is taken over, as if absent.
  const insert = db.prepare(
    `insert into kv (key, value, expires_at) values (?, ?, ?)
     on conflict (key) do update set value = excluded.value, expires_at = excluded.expires_at where kv.expires_at <= ?`,
  );
  const upsert = db.prepare('insert into kv (key, value, expires_at) values (?, ?, ?) on conflict (key) do update set value = excluded.value, expires_at = excluded.expires_at');
  const select = db.prepare('select value from kv where key = ? and expires_at > ?');
  const remove = db.prepare('delete from kv where key = ?');
  const sweep = db.prepare('delete from kv where expires_at <= ?');
  const buckets = createLocalBuckets(now);
  let closed = false;

  const sweeper = setInterval(function sweepExpired() {
    if (!closed) sweep.run(now());
  }, opts.sweepIntervalMs ?? 60_000);
  sweeper.unref();

  /** Runs `fn` in one transaction: one commit (one fsync) for a whole batch of marks. */
  function inTransaction<T>(fn: () => T): T {
    db.exec('begin immediate');
    try {
      const result = fn();
      db.exec('commit');
      return result;
    } catch (err) {
      db.exec('rollback');
      throw err;
    }
  }

  function setMany(keys: string[], ttlMs: number): boolean[] {
    if (keys.length === 0) return [];
    const t = now();
    return inTransaction(() => keys.map((k) => Number(insert.run(k, '1', t + ttlMs, t).changes) > 0));
  }

  return {
    kind: 'sqlite',
    async setIfAbsent(key, ttlMs) {
      return setMany([key], ttlMs)[0]!;
    },
    async setManyIfAbsent(keys, ttlMs) {
      return setMany(keys, ttlMs);
    },
    async hasMany(keys) {
      const t = now();
      return keys.map((k) => select.get(k, t) !== undefined);
    },
    async get(key) {
      const row = select.get(key, now()) as { value: string } | undefined;
      return row?.value ?? null;
    },
    async set(key, value, ttlMs) {
      upsert.run(key, value, ttlMs === undefined ? Number.MAX_SAFE_INTEGER : now() + ttlMs);
    },
    async del(key) {
      remove.run(key);
      buckets.delete(key);
    },
    async take(key: string, bucket: TokenBucket, cost = 1): Promise<TakeResult> {
      return buckets.take(key, bucket, cost);
    },
    async ping() {
      return !closed && db.isOpen;
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(sweeper);
      buckets.clear();
      db.close();
    },
  };
}

/** The cache's table in the SQLite file at `path` (created when missing). */
function openKv(path: string): DatabaseSync {
  return openSqlite(
    path,
    `
    create table if not exists kv (key text primary key, value text not null, expires_at integer not null) without rowid;
    create index if not exists kv_expires_at on kv (expires_at);
  `,
  );
}

/**
 * Moves the marks of a cache file of its own (`cache.sqlite`, before the bus and the cache
 * shared one file) into `to`: the live ones are copied in one transaction, then the old
 * file is removed. Nothing to do when `from` does not exist.
 */
export function migrateCacheFile(opts: { from: string; to: string; logger: Logger; now?: () => number }): void {
  if (!existsSync(opts.from)) return;
  const db = openKv(opts.to);
  let moved = 0;
  try {
    db.prepare('attach database ? as old').run(opts.from);
    try {
      db.exec('begin immediate');
      try {
        moved = Number(db.prepare('insert or ignore into main.kv select key, value, expires_at from old.kv where expires_at > ?').run((opts.now ?? Date.now)()).changes);
        db.exec('commit');
      } catch (err) {
        db.exec('rollback');
        throw err;
      }
    } finally {
      db.exec('detach database old');
    }
  } finally {
    db.close();
  }
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${opts.from}${suffix}`, { force: true });
  opts.logger.info({ from: opts.from, to: opts.to, marks: moved }, `cache: moved ${moved} live marks from ${opts.from} into ${opts.to}, and removed the old file`);
}
