import pg from 'pg';
import { OrreryError } from '../errors.ts';
import { abortableSleep, backoffDelay, type BackoffPolicy } from '../retry.ts';
import type { Queryable, QueryResult, Store } from './types.ts';

export interface PgStoreOptions {
  url: string;
  /** A schema to work in (created if missing); tests give each file its own. */
  schema?: string;
  max?: number;
  connectTimeoutMs?: number;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
/** Same rule as schemas: the name is quoted into LISTEN, which takes no bind parameters. */
const CHANNEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
/** A dropped listener retries quickly at first (a failover is usually short), then backs off. */
const LISTEN_BACKOFF: BackoffPolicy = { initialMs: 250, factor: 2, maxMs: 15_000, jitter: 0.2 };

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
 * The store on Postgres through a pg Pool. `listen` uses a dedicated connection per
 * channel. NOTIFY channels are database-wide and ignore `schema`: callers sharing a database
 * (tests, several deployments) must namespace their channel names themselves.
 *
 * @example
 *   const store = createPgStore({ url: config.database.url });
 *   const { rows } = await store.query('select $1::int as n', [1]);
 *   const stop = await store.listen('orrery_control_plane', (payload) => reload(payload), () => reloadAll());
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

  const listeners = new Set<() => Promise<void>>();
  let closed = false;

  let schemaReady: Promise<void> | undefined;
  function ensureSchema(): Promise<void> {
    if (!opts.schema) return Promise.resolve();
    schemaReady ??= pool.query(`create schema if not exists ${opts.schema}`).then(
      () => undefined,
      (err: unknown) => {
        // "if not exists" is not atomic: a second process creating the same schema at the
        // same moment hits the catalog's unique index (23505) or 42P06. It exists either way.
        const code = (err as { code?: string }).code;
        if (code === '23505' || code === '42P06') return;
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

  /**
   * One dedicated connection per channel, outside the pool: a LISTEN lives as long as its
   * session, and a pooled client would be handed to other queries (or recycled) under it.
   */
  async function listen(channel: string, onNotify: (payload: string) => void, onReconnect?: () => void): Promise<() => Promise<void>> {
    if (!CHANNEL_NAME.test(channel)) throw new OrreryError('STORE_BAD_CHANNEL', `invalid channel name "${channel}"`);
    if (closed) throw new OrreryError('STORE_CLOSED', 'the store is closed');
    let client: pg.Client | undefined;
    let stopped = false;
    const abort = new AbortController();

    // The callbacks run inside pg's message handling: a throw there would break the
    // connection, so it is contained here and guarding is the caller's job.
    function safely(fn: () => void): void {
      try {
        fn();
      } catch {
        // Deliberately ignored, see above.
      }
    }

    async function connect(): Promise<pg.Client> {
      const c = new pg.Client({
        connectionString: opts.url,
        connectionTimeoutMillis: opts.connectTimeoutMs ?? 5_000,
        // Without keepalive a silently dead peer (no FIN) would leave us listening to nothing.
        keepAlive: true,
        // LISTEN / UNLISTEN are instant; a hang means a dead peer, and must not block a stop.
        query_timeout: opts.connectTimeoutMs ?? 5_000,
        application_name: `orrery-listen:${channel}`,
      });
      let dead = false;
      const lost = () => {
        dead = true;
        onLost(c);
      };
      c.on('error', lost);
      c.on('end', lost);
      c.on('notification', (msg) => {
        if (c === client && msg.channel === channel) safely(() => onNotify(msg.payload ?? ''));
      });
      try {
        await c.connect();
        await c.query(`listen "${channel}"`);
        if (dead) throw new Error('connection lost while subscribing');
      } catch (err) {
        void endQuietly(c);
        throw err;
      }
      return c;
    }

    function onLost(c: pg.Client): void {
      if (c !== client || stopped) return;
      client = undefined;
      void endQuietly(c);
      void reconnect();
    }

    async function reconnect(): Promise<void> {
      for (let attempt = 1; !stopped; attempt++) {
        await abortableSleep(backoffDelay(attempt, LISTEN_BACKOFF), abort.signal);
        if (stopped) return;
        let c: pg.Client;
        try {
          c = await connect();
        } catch {
          continue;
        }
        if (stopped) {
          await endQuietly(c);
          return;
        }
        client = c;
        // After re-LISTENing, so that nothing sent from here on is missed while the caller re-reads.
        if (onReconnect) safely(onReconnect);
        return;
      }
    }

    async function stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      listeners.delete(stop);
      abort.abort();
      const c = client;
      client = undefined;
      if (!c) return;
      await c.query(`unlisten "${channel}"`).catch(() => {});
      await endQuietly(c);
    }

    // The first connection fails loudly: a caller starting up should know the database is
    // unreachable. Only a connection that was up reconnects by itself.
    try {
      client = await connect();
    } catch (err) {
      throw wrap(err);
    }
    if (closed) {
      await stop();
      throw new OrreryError('STORE_CLOSED', 'the store was closed while listening started');
    }
    listeners.add(stop);
    return stop;
  }

  return {
    kind: 'postgres',
    query,
    listen,
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
      closed = true;
      await Promise.allSettled([...listeners].map((stop) => stop()));
      await pool.end();
    },
  };
}

/**
 * Ends a client without waiting on a peer that may be gone: `end()` waits for the socket to
 * close, which an unreachable server never acknowledges.
 */
async function endQuietly(c: pg.Client, waitMs = 2_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    c.end().catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
}
