import pg from 'pg';
import { OrreryError } from '../errors.ts';
import type { Queryable, QueryResult, Store } from './types.ts';

export interface PgStoreOptions {
  url: string;
  /** A schema to work in (created if missing); tests give each file its own. */
  schema?: string;
  max?: number;
  connectTimeoutMs?: number;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Connection failures are retriable; SQL errors (constraint, syntax) are not. */
function wrap(err: unknown): OrreryError {
  const code = (err as { code?: string }).code;
  const sqlState = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
  // Class 08 is connection exceptions, 57P0x is admin shutdown / crash, 53 is resources.
  const transient = sqlState === undefined || /^(08|53|57P0)/.test(sqlState) || sqlState === '40001' || sqlState === '40P01';
  return new OrreryError(sqlState ? `STORE_SQL_${sqlState}` : 'STORE_UNAVAILABLE', `postgres: ${(err as Error).message}`, {
    retriable: transient,
    cause: err,
    status: transient ? 503 : 500,
  });
}

/**
 * The store on Postgres through a pg Pool.
 *
 * @example
 *   const store = createPgStore({ url: config.database.url });
 *   const { rows } = await store.query('select $1::int as n', [1]);
 */
export function createPgStore(opts: PgStoreOptions): Store {
  if (opts.schema !== undefined && !SCHEMA_NAME.test(opts.schema)) {
    throw new OrreryError('STORE_BAD_SCHEMA', `invalid schema name "${opts.schema}"`);
  }
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max ?? 10,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5_000,
    // The schema is set per connection, so every pooled client sees the same tables.
    ...(opts.schema ? { options: `-c search_path=${opts.schema},public` } : {}),
  });
  // An idle client that loses its server emits on the pool; without a listener Node crashes.
  pool.on('error', () => {});

  let schemaReady: Promise<void> | undefined;
  function ensureSchema(): Promise<void> {
    if (!opts.schema) return Promise.resolve();
    schemaReady ??= pool.query(`create schema if not exists ${opts.schema}`).then(
      () => undefined,
      (err: unknown) => {
        schemaReady = undefined;
        throw err;
      },
    );
    return schemaReady;
  }

  async function query<Row>(sql: string, params?: unknown[]): Promise<QueryResult<Row>> {
    try {
      await ensureSchema();
      const res = await pool.query(sql, params as unknown[]);
      return { rows: res.rows as Row[], rowCount: res.rowCount ?? 0 };
    } catch (err) {
      throw wrap(err);
    }
  }

  return {
    kind: 'postgres',
    query,
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      let client: pg.PoolClient;
      try {
        await ensureSchema();
        client = await pool.connect();
      } catch (err) {
        throw wrap(err);
      }
      const tx: Queryable = {
        async query<Row>(sql: string, params?: unknown[]) {
          try {
            const res = await client.query(sql, params as unknown[]);
            return { rows: res.rows as Row[], rowCount: res.rowCount ?? 0 };
          } catch (err) {
            throw wrap(err);
          }
        },
      };
      let broken = false;
      try {
        await tx.query('begin');
        const result = await fn(tx);
        await tx.query('commit');
        return result;
      } catch (err) {
        await client.query('rollback').catch(() => {
          broken = true;
        });
        throw err;
      } finally {
        client.release(broken);
      }
    },
    async ping() {
      try {
        await pool.query('select 1');
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      await pool.end();
    },
  };
}
