import { EventEmitter } from 'node:events';
import type { SQLInputValue } from 'node:sqlite';
import { openSqlite } from '../sqlite.ts';
import { OrreryError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Queryable, QueryResult, Store } from './types.ts';

/**
 * The store on SQLite (node:sqlite, WAL, `synchronous=FULL`): the first step of issue #19's
 * store port (./sqlite-plan.md). Not used by any domain yet: each domain module gets its
 * SQLite variants next, and the embedded default switches from PGlite once all of them
 * pass their contracts here.
 *
 * What it does so that SQL written for Postgres needs as few variants as possible
 * (./sqlite-plan.md, §0):
 * - `$n` placeholders become SQLite's numbered `?n` (same meaning: reordered and repeated
 *   parameters bind as in Postgres), outside quoted literals and identifiers;
 * - text without parameters goes to `exec()`, so multi-statement migrations run whole;
 * - a Date parameter binds as ISO-8601 text (node:sqlite binds a leading Date as NULL), an
 *   array or plain object as JSON text, a boolean as 1/0;
 * - columns declared `jsonb` or `json` come back parsed, as node-postgres returns them;
 * - `now()` is ISO-8601 text with milliseconds and `Z`, the form `new Date(x)` reads back.
 *
 * One connection, so one transaction at a time: `transaction()` and every query outside it
 * wait their turn (as on PGlite, a transaction must never wait on something that itself
 * needs the store). NOTIFY is in process: `notify(channel, payload)` on a transaction's
 * handle is delivered after its commit, never for a rollback.
 *
 * @example const store = createSqliteStore({ file: '.orrery/orrery.sqlite', logger });
 */
export interface SqliteStore extends Store {
  readonly dialect: 'sqlite';
  transaction<T>(fn: (tx: SqliteQueryable) => Promise<T>): Promise<T>;
  notify(channel: string, payload: string): void;
}

export interface SqliteQueryable extends Queryable {
  /** Delivered to listeners once the transaction commits. */
  notify(channel: string, payload: string): void;
}

const CHANNEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const JSON_TYPES = new Set(['json', 'jsonb']);

/** `$n` → `?n`, leaving quoted literals ('…'), identifiers ("…") and comments alone. */
export function numberedPlaceholders(sql: string): string {
  let out = '';
  for (let i = 0; i < sql.length; ) {
    const c = sql[i]!;
    if (c === "'" || c === '"') {
      let j = i + 1;
      for (; j < sql.length; j++) {
        if (sql[j] === c) {
          if (sql[j + 1] === c) j++;
          else break;
        }
      }
      out += sql.slice(i, j + 1);
      i = j + 1;
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      const j = end < 0 ? sql.length : end;
      out += sql.slice(i, j);
      i = j;
    } else if (c === '$' && /[0-9]/.test(sql[i + 1] ?? '')) {
      let j = i + 1;
      while (j < sql.length && /[0-9]/.test(sql[j]!)) j++;
      out += `?${sql.slice(i + 1, j)}`;
      i = j;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

function bindable(value: unknown): SQLInputValue {
  if (value === undefined) return null;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'bigint' || typeof value === 'number' || typeof value === 'string' || value === null) return value;
  if (value instanceof Uint8Array) return value;
  return JSON.stringify(value);
}

/** SQLite's errors carry `errcode` (an extended result code); a busy database is worth a retry. */
function wrap(err: unknown): OrreryError {
  if (err instanceof OrreryError) return err;
  const errcode = (err as { errcode?: number }).errcode;
  const busy = errcode === 5 || errcode === 6;
  return new OrreryError(errcode === undefined ? 'STORE_UNAVAILABLE' : `STORE_SQLITE_${errcode}`, `sqlite: ${(err as Error).message}`, {
    retriable: busy || errcode === undefined,
    cause: err,
    status: busy || errcode === undefined ? 503 : 500,
  });
}

export function createSqliteStore(opts: { file: string; logger: Logger; /** Called once the database is closed: a lock's release. */ onClose?: () => Promise<void> }): SqliteStore {
  const db = openSqlite(opts.file, 'PRAGMA foreign_keys=ON;');
  db.function('now', { deterministic: false }, () => new Date().toISOString());
  const notifications = new EventEmitter();
  notifications.setMaxListeners(0);
  let closed = false;
  // One operation at a time on the one connection: a transaction holds it until it ends.
  let tail: Promise<unknown> = Promise.resolve();
  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = tail.then(fn);
    tail = run.catch(() => {});
    return run;
  }

  function run<Row>(sql: string, params?: unknown[]): QueryResult<Row> {
    if (closed) throw new OrreryError('STORE_CLOSED', 'the store is closed', { retriable: true, status: 503 });
    try {
      if (!params || params.length === 0) {
        if (!/^\s*(select|with|values|pragma)\b/i.test(sql) && !/\breturning\b/i.test(sql)) {
          const before = db.prepare('SELECT total_changes() AS n').get() as { n: number };
          db.exec(sql);
          const after = db.prepare('SELECT total_changes() AS n').get() as { n: number };
          return { rows: [], rowCount: after.n - before.n };
        }
      }
      const stmt = db.prepare(numberedPlaceholders(sql));
      const args = (params ?? []).map(bindable);
      const columns = stmt.columns();
      if (columns.length === 0) {
        const r = stmt.run(...args);
        return { rows: [], rowCount: Number(r.changes) };
      }
      const json = columns.filter((c) => c.type !== null && JSON_TYPES.has(c.type.toLowerCase())).map((c) => c.name);
      const rows = stmt.all(...args) as Array<Record<string, unknown>>;
      const out = rows.map((r) => {
        const row: Record<string, unknown> = { ...r };
        for (const name of json) if (typeof row[name] === 'string') row[name] = JSON.parse(row[name] as string);
        return row as Row;
      });
      return { rows: out, rowCount: out.length };
    } catch (err) {
      throw wrap(err);
    }
  }

  function deliver(channel: string, payload: string): void {
    for (const listener of notifications.listeners(channel)) {
      try {
        (listener as (p: string) => void)(payload);
      } catch {
        // A listener's own failure is its business, as with the pg store.
      }
    }
  }

  return {
    kind: 'sqlite',
    dialect: 'sqlite',
    query: <Row>(sql: string, params?: unknown[]) => exclusive(async () => run<Row>(sql, params)),
    transaction<T>(fn: (tx: SqliteQueryable) => Promise<T>): Promise<T> {
      return exclusive(async () => {
        const pending: Array<[string, string]> = [];
        run('BEGIN IMMEDIATE');
        let result: T;
        try {
          result = await fn({ query: async <Row>(sql: string, params?: unknown[]) => run<Row>(sql, params), notify: (channel, payload) => void pending.push([channel, payload]) });
        } catch (err) {
          if (db.isTransaction) db.exec('ROLLBACK');
          throw err;
        }
        run('COMMIT');
        for (const [channel, payload] of pending) deliver(channel, payload);
        return result;
      });
    },
    notify(channel, payload) {
      deliver(channel, payload);
    },
    async listen(channel, onNotify) {
      if (!CHANNEL_NAME.test(channel)) throw new OrreryError('STORE_BAD_CHANNEL', `invalid channel name "${channel}"`);
      if (closed) throw new OrreryError('STORE_CLOSED', 'the store is closed');
      const listener = (payload: string) => onNotify(payload);
      notifications.on(channel, listener);
      return async () => {
        notifications.off(channel, listener);
      };
    },
    async ping() {
      return !closed && db.isOpen;
    },
    async close() {
      if (closed) return;
      await exclusive(async () => {
        closed = true;
        notifications.removeAllListeners();
        db.close();
      });
      await opts.onClose?.();
      opts.logger.debug({ file: opts.file }, 'sqlite store closed');
    },
  };
}
