import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Envelope } from '../../core/envelope.ts';
import { OrreryError } from '../../core/errors.ts';
import { migrate, type Migration } from '../../core/store/migrate.ts';
import type { Queryable, QueryResult, Store } from '../../core/store/types.ts';

/**
 * The batch sink's staging area: events land in one Postgres table, range-partitioned by
 * the UTC day they were received, from which a batch exporter (the Airflow DAG in
 * sinks/batch/dags/orrery_export.py) copies them to a warehouse.
 *
 * Dedup: the primary key is (source_id, message_id, received_day), because a unique key on
 * a partitioned table must contain the partition key. So a messageId is staged once per
 * source *and UTC day*: a redelivery that crosses midnight in receivedAt (a retry by the
 * client with a new receivedAt, long after the first) is staged again. In practice the
 * bus redelivers the same envelope, with the same receivedAt, so it lands on the same day.
 *
 * Watermark: rows are exported in (staged_xid, stage_seq) order, and only rows whose
 * staging transaction is older than the oldest transaction still running
 * (`staged_xid < pg_snapshot_xmin(pg_current_snapshot())`). `stage_seq` alone cannot be
 * the watermark: sequence values are handed out when rows are written, not when they
 * commit, so a transaction holding seq 100 can commit after one holding seq 101 has
 * been exported, and `stage_seq > 101` would skip it for good. Every transaction below
 * the snapshot's xmin has finished, and any transaction not yet finished (or not yet
 * started) has an xid at or above it, so the set of rows below the horizon never grows
 * behind the watermark. A long-running transaction anywhere in the cluster holds the
 * horizon back: the export then waits, it never loses rows. `staged_xid` is the 64-bit
 * transaction id (xid8) as a bigint, which is what the warehouse keeps as its watermark.
 */

import { DEFAULT_STAGE_TABLE } from './stage-table.ts';

export { DEFAULT_STAGE_TABLE };

const IDENT = /^[a-z_][a-z0-9_]*$/;
/** Partition names append `_pYYYYMMDD` (10 chars) and Postgres truncates names at 63. */
const MAX_TABLE = 53;
const MAX_SCHEMA = 63;
/** Namespace of the advisory lock that serialises partition creation (arbitrary constant). */
const PARTITION_LOCK_SPACE = 0x0_6261_7463;
/** A partition DDL waits this long for the parent's lock, then fails and is retried by the caller. */
const DDL_LOCK_TIMEOUT = '10s';

/** The columns written, in COPY order; `ord` keeps the batch order into stage_seq. */
const COLUMNS = [
  'ord',
  'source_id',
  'message_id',
  'type',
  'event',
  'user_id',
  'anonymous_id',
  'received_at',
  'received_day',
  'event_timestamp',
  'properties',
  'context',
  'payload',
] as const;
const DAY = COLUMNS.indexOf('received_day');
const TABLE_COLUMNS = COLUMNS.slice(1).join(', ');
const TEMP_TABLE = 'orrery_batch_stage_in';

/**
 * The staging table's migrations. The id carries the table name when it is not the
 * default, so that two staging tables in one schema each get created.
 *
 * @example await migrate(store, batchStageMigrations('batch_events'));
 */
export function batchStageMigrations(table: string = DEFAULT_STAGE_TABLE): Migration[] {
  checkTable(table);
  const suffix = table === DEFAULT_STAGE_TABLE ? '' : `_${table}`;
  return [
    {
      id: `0300_batch_stage${suffix}`,
      // bigserial, not identity: identity columns on partitioned tables need Postgres 17.
      // No default partition: rows of a day without its partition fail loudly, and adding a
      // partition would otherwise have to scan the default one under an exclusive lock.
      sql: `create table if not exists ${table} (
        stage_seq bigserial not null,
        staged_xid bigint not null default (pg_current_xact_id()::text::bigint),
        staged_at timestamptz not null default now(),
        source_id text not null,
        message_id text not null,
        type text not null,
        event text,
        user_id text,
        anonymous_id text,
        received_at timestamptz not null,
        received_day date not null,
        event_timestamp timestamptz,
        properties jsonb,
        context jsonb,
        payload jsonb not null,
        primary key (source_id, message_id, received_day)
      ) partition by range (received_day);
      create index if not exists ${table}_export on ${table} (staged_xid, stage_seq);`,
    },
  ];
}

/** The default staging table's migrations, for the lead's migration list. */
export const BATCH_STAGE_MIGRATIONS: readonly Migration[] = batchStageMigrations();

export interface StagerOptions {
  /** A connection string (the stager owns its pool and ends it on close), or a pool the caller owns. */
  connection: string | pg.Pool;
  /** Schema of the staging table, created if missing; default: the connection's search_path. */
  schema?: string;
  /** Default `batch_events`. */
  table?: string;
}

export interface Stager {
  /**
   * Writes events to their day partitions (created as needed). Events already staged
   * (same source, messageId and UTC day) and duplicates within the batch are skipped:
   * `inserted` counts only new rows. All or nothing: one transaction.
   */
  stage(events: Envelope[]): Promise<{ inserted: number }>;
  /** Creates the schema and table if missing; `stage` calls it on first use. */
  ready(): Promise<void>;
  /** The days that have a partition, as YYYY-MM-DD, oldest first. */
  partitions(): Promise<string[]>;
  /** Ends the pool when the stager created it; a caller's pool is left alone. */
  close(): Promise<void>;
}

/**
 * The staging writer of the batch sink: COPY into a session temp table, then one
 * `insert … select … on conflict do nothing` into the day-partitioned table, so a batch
 * costs two round trips whatever its size, and redeliveries are no-ops.
 *
 * @example
 *   const stager = createStager({ connection: config.database.url, schema: 'orrery' });
 *   const { inserted } = await stager.stage(envelopes);
 *   await stager.close();
 */
export function createStager(opts: StagerOptions): Stager {
  const table = opts.table ?? DEFAULT_STAGE_TABLE;
  checkTable(table);
  const schema = opts.schema;
  if (schema !== undefined && (!IDENT.test(schema) || schema.length > MAX_SCHEMA)) {
    throw new OrreryError('BATCH_STAGE_BAD_NAME', `invalid schema name "${schema}"`);
  }
  const owned = typeof opts.connection === 'string';
  const pool = typeof opts.connection === 'string' ? new pg.Pool({ connectionString: opts.connection, max: 4 }) : opts.connection;
  // An idle client that loses its server emits on the pool; without a listener Node crashes.
  if (owned) pool.on('error', () => {});
  const qualify = (name: string) => (schema ? `${schema}.${name}` : name);
  const qualified = qualify(table);
  /** Days whose partition this process has made sure of: the DDL runs once per day and process. */
  const known = new Set<string>();

  let readyPromise: Promise<void> | undefined;
  function ready(): Promise<void> {
    readyPromise ??= setUp().catch((err: unknown) => {
      readyPromise = undefined;
      throw wrap(err, 'could not create the staging table');
    });
    return readyPromise;
  }

  async function setUp(): Promise<void> {
    if (schema) {
      await pool.query(`create schema if not exists ${schema}`).catch((err: unknown) => {
        // "if not exists" is not atomic: a concurrent creator hits the catalog's unique index.
        const code = (err as { code?: string }).code;
        if (code !== '23505' && code !== '42P06') throw err;
      });
    }
    await migrate(storeOn(pool, schema), batchStageMigrations(table));
  }

  /**
   * Creates the missing day partitions in their own short transaction, before the data
   * transaction. Create-then-attach rather than `create table … partition of`: the latter
   * takes an exclusive lock on the parent, which would queue behind the exporter's reads
   * and hold up every stager meanwhile; ATTACH only takes SHARE UPDATE EXCLUSIVE, which
   * lets inserts and selects on the parent go on. The advisory lock makes concurrent
   * stagers (other processes) take turns, so the second one finds the partition made by
   * the first and skips it.
   */
  async function ensurePartitions(days: string[]): Promise<void> {
    const missing = days.filter((d) => !known.has(d)).sort();
    if (missing.length === 0) return;
    await inTransaction(pool, async (client) => {
      await client.query(`set local lock_timeout = '${DDL_LOCK_TIMEOUT}'`);
      await client.query('select pg_advisory_xact_lock($1, hashtext($2))', [PARTITION_LOCK_SPACE, qualified]);
      for (const day of missing) {
        const partition = qualify(`${table}_p${day.replaceAll('-', '')}`);
        const { rows } = await client.query<{ exists: boolean }>('select to_regclass($1) is not null as exists', [partition]);
        if (rows[0]?.exists) continue;
        // The primary key and the export index come with the attach, from the parent's.
        await client.query(`create table ${partition} (like ${qualified} including defaults)`);
        await client.query(`alter table ${qualified} attach partition ${partition} for values from ('${day}') to ('${nextDay(day)}')`);
      }
    });
    for (const d of missing) known.add(d);
  }

  return {
    ready,
    async stage(events) {
      if (events.length === 0) return { inserted: 0 };
      await ready();
      const rows = events.map(toRow);
      try {
        await ensurePartitions([...new Set(rows.map((r) => r[DAY] as string))]);
        return await inTransaction(pool, async (client) => {
          // Per session and emptied at each commit: created once per pooled connection,
          // not once per batch (temp tables dropped at every commit bloat the catalog).
          await client.query(
            `create temp table if not exists ${TEMP_TABLE} (
              ord int not null, source_id text, message_id text, type text, event text, user_id text,
              anonymous_id text, received_at timestamptz, received_day date, event_timestamp timestamptz,
              properties jsonb, context jsonb, payload jsonb
            ) on commit delete rows`,
          );
          await pipeline(
            Readable.from(rows.map(csvLine)),
            client.query(copyFrom(`copy pg_temp.${TEMP_TABLE} (${COLUMNS.join(', ')}) from stdin with (format csv)`)),
          );
          // The order by makes stage_seq follow the batch (and so the bus) order.
          const res = await client.query(
            `insert into ${qualified} (${TABLE_COLUMNS})
             select ${TABLE_COLUMNS} from pg_temp.${TEMP_TABLE} order by ord
             on conflict do nothing`,
          );
          return { inserted: res.rowCount ?? 0 };
        });
      } catch (err) {
        throw wrap(err, 'could not stage events');
      }
    },
    async partitions() {
      await ready();
      const { rows } = await pool.query<{ bound: string }>(
        `select pg_get_expr(c.relpartbound, c.oid) as bound
           from pg_inherits i join pg_class c on c.oid = i.inhrelid
          where i.inhparent = $1::regclass`,
        [qualified],
      );
      const days = rows.map((r) => /FROM \('(\d{4}-\d{2}-\d{2})'\)/.exec(r.bound)?.[1]).filter((d): d is string => d !== undefined);
      return days.sort();
    },
    async close() {
      if (owned) await pool.end();
    },
  };
}

function checkTable(table: string): void {
  if (!IDENT.test(table) || table.length > MAX_TABLE) {
    throw new OrreryError('BATCH_STAGE_BAD_NAME', `invalid staging table name "${table}" (lowercase identifier, at most ${MAX_TABLE} characters)`);
  }
}

/** The UTC day of an ISO timestamp: partitions must not depend on the server's time zone. */
function dayOf(iso: string): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) throw new OrreryError('BATCH_STAGE_BAD_EVENT', `invalid receivedAt "${iso}"`);
  return new Date(t).toISOString().slice(0, 10);
}

function nextDay(day: string): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
}

type Cell = string | number | null;

function toRow(e: Envelope, ord: number): Cell[] {
  return [
    ord,
    text(e.sourceId),
    text(e.messageId),
    e.type,
    text(e.event),
    text(e.userId),
    text(e.anonymousId),
    e.receivedAt,
    dayOf(e.receivedAt),
    e.timestamp,
    e.properties === undefined ? null : jsonText(e.properties),
    e.context === undefined ? null : jsonText(e.context),
    jsonText(e),
  ];
}

/** Postgres text cannot hold NUL: one such character would fail the whole batch, forever. */
function text(s: string | undefined): string | null {
  return s === undefined ? null : s.replaceAll('\u0000', '');
}

/** As `text`, for JSON: jsonb rejects the \u0000 escape. Object keys are kept as they are. */
function jsonText(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'string' ? v.replaceAll('\u0000', '') : v));
}

/** CSV as COPY reads it: an unquoted empty field is NULL, a quoted one an empty string. */
function csvLine(row: Cell[]): string {
  return `${row.map((c) => (c === null ? '' : typeof c === 'number' ? String(c) : `"${c.replaceAll('"', '""')}"`)).join(',')}\n`;
}

async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('begin');
    const result = await fn(client);
    await client.query('commit');
    return result;
  } catch (err) {
    await client.query('rollback').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    client.release(broken);
  }
}

/** What a pool and a pooled client have in common, for plain queries. */
interface Runner {
  query(sql: string, params?: unknown[]): Promise<pg.QueryResult>;
}

/**
 * Just enough of a Store for core/store/migrate.ts on a pool that may not be ours:
 * `set local search_path` puts the migrations (and their bookkeeping table) in the
 * schema without touching the pool's own connection settings.
 */
function storeOn(pool: pg.Pool, schema: string | undefined): Store {
  const run = async <Row>(q: Runner, sql: string, params?: unknown[]): Promise<QueryResult<Row>> => {
    const res = await q.query(sql, params);
    return { rows: res.rows as Row[], rowCount: res.rowCount ?? 0 };
  };
  return {
    kind: 'postgres',
    query: (sql, params) => run(pool, sql, params),
    transaction: (fn) =>
      inTransaction(pool, async (client) => {
        if (schema) await client.query(`set local search_path to ${schema}, public`);
        const tx: Queryable = { query: (sql, params) => run(client, sql, params) };
        return fn(tx);
      }),
    listen: () => Promise.reject(new Error('the batch stager does not listen')),
    ping: async () => {
      await pool.query('select 1');
      return true;
    },
    close: async () => {},
  };
}

/** Connection trouble, deadlocks and lock timeouts are worth a retry; bad data and SQL are not. */
function wrap(err: unknown, what: string): OrreryError {
  if (err instanceof OrreryError) return err;
  const code = (err as { code?: string }).code;
  const sqlState = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
  const retriable = sqlState === undefined || /^(08|53|57P0)/.test(sqlState) || ['40001', '40P01', '55P03'].includes(sqlState);
  return new OrreryError(sqlState ? `BATCH_STAGE_SQL_${sqlState}` : 'BATCH_STAGE_UNAVAILABLE', `${what}: ${(err as Error).message}`, {
    retriable,
    cause: err,
  });
}
