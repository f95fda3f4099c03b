import { PGlite, types, type Transaction } from '@electric-sql/pglite';
import { lockDir } from '../dir-lock.ts';
import { OrreryError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Queryable, QueryResult, Store } from './types.ts';

export interface PgliteStoreOptions {
  /** Where the database files live (created when missing); absent: in memory, gone at close. */
  dir?: string;
  logger: Logger;
}

/** Same rule as the pg store: the name is written into LISTEN, which takes no bind parameters. */
const CHANNEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Postgres errors carry a SQLSTATE; anything else (the database closed, the WASM runtime
 * failed) is not a statement's fault. There is no network to drop, so only serialisation
 * failures and deadlocks are worth a retry.
 */
function wrap(err: unknown): OrreryError {
  if (err instanceof OrreryError) return err;
  const code = (err as { code?: string }).code;
  const sqlState = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
  const transient = sqlState === '40001' || sqlState === '40P01';
  return new OrreryError(sqlState ? `STORE_SQL_${sqlState}` : 'STORE_UNAVAILABLE', `pglite: ${(err as Error).message}`, {
    retriable: transient,
    cause: err,
    status: transient || !sqlState ? 503 : 500,
  });
}

type Runner = Pick<Transaction, 'query' | 'exec'>;

/**
 * A statement with parameters goes through the extended protocol (one statement); one
 * without goes through the simple protocol, which takes several statements, as pg's
 * `query(sql)` does, so migrations written for pg run unchanged here.
 */
async function run<Row>(on: Runner, sql: string, params?: unknown[]): Promise<QueryResult<Row>> {
  try {
    if (params && params.length > 0) {
      const res = await on.query<Row>(sql, params);
      return { rows: res.rows, rowCount: Math.max(res.affectedRows ?? 0, res.rows.length) };
    }
    const results = await on.exec(sql);
    const last = results[results.length - 1];
    const rows = (last?.rows ?? []) as Row[];
    return { rows, rowCount: Math.max(last?.affectedRows ?? 0, rows.length) };
  } catch (err) {
    throw wrap(err);
  }
}

/**
 * The store on an embedded Postgres (PGlite: Postgres compiled to WebAssembly, in this
 * process), for single-process mode without a database server. Same SQL, migrations and
 * LISTEN/NOTIFY as the pg store; values come back as pg returns them (bigint and numeric
 * as strings, timestamptz as Date, jsonb parsed).
 *
 * What differs: there is one connection. Queries run one at a time, and a transaction holds
 * the database until it ends, so everything else in the process waits for it (a
 * transaction must never wait on something that itself needs the store). One process per
 * directory: a lock file guards it.
 *
 * @example
 *   const store = await createPgliteStore({ dir: join(config.dataDir, 'store'), logger });
 */
export async function createPgliteStore(opts: PgliteStoreOptions): Promise<Store> {
  const release = opts.dir
    ? await lockDir(opts.dir, {
        code: 'STORE_LOCKED',
        what: 'an embedded store',
        hint: 'the embedded store serves one process; run the components in one process (orrery start), or set DATABASE_URL',
        logger: opts.logger,
      })
    : undefined;
  let db: PGlite;
  try {
    // pg returns int8 as a string (it may not fit a double); so does this store.
    db = await PGlite.create(opts.dir, { parsers: { [types.INT8]: (value: string) => value } });
  } catch (err) {
    await release?.();
    throw wrap(err);
  }

  const listeners = new Set<() => Promise<void>>();
  let closed = false;

  async function listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>> {
    if (!CHANNEL_NAME.test(channel)) throw new OrreryError('STORE_BAD_CHANNEL', `invalid channel name "${channel}"`);
    if (closed) throw new OrreryError('STORE_CLOSED', 'the store is closed');
    let stopped = false;
    // PGlite calls back from a microtask, where a throw would crash the process; guarding
    // is the caller's job, as with the pg store.
    const callback = (payload: string) => {
      if (stopped) return;
      try {
        onNotify(payload);
      } catch {
        // Deliberately ignored, see above.
      }
    };
    let unlisten: () => Promise<void>;
    try {
      unlisten = await db.listen(channel, callback);
    } catch (err) {
      throw wrap(err);
    }
    // In process, a listener is never disconnected, so `onReconnect` is never needed.
    async function stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      listeners.delete(stop);
      if (!closed) await unlisten().catch(() => {});
    }
    listeners.add(stop);
    return stop;
  }

  return {
    kind: 'pglite',
    query: <Row>(sql: string, params?: unknown[]) => run<Row>(db, sql, params),
    listen,
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      try {
        return await db.transaction(async (t) => fn({ query: <Row>(sql: string, params?: unknown[]) => run<Row>(t, sql, params) }));
      } catch (err) {
        // The caller's own errors come back as they were thrown.
        const code = (err as { code?: unknown }).code;
        if (err instanceof OrreryError || typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) throw err;
        throw wrap(err);
      }
    },
    async ping() {
      try {
        await db.query('select 1');
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      if (closed) return;
      await Promise.allSettled([...listeners].map((stop) => stop()));
      closed = true;
      try {
        await db.close();
      } finally {
        await release?.();
      }
    },
  };
}
