import { DLQ_HEADER } from '../core/contracts/dlq-headers.ts';
import type { IncomingMessage } from '../core/bus/types.ts';
import { migrate } from '../core/store/migrate.ts';
import { dialectOf, type Queryable, type Store } from '../core/store/types.ts';
import { replayPick, replayRows, type ReplayResult } from '../core/store/replay-rows.ts';
import { allocateDeadLetterIds, DEAD_LETTER_MIGRATIONS, valueRows } from '../sinks/dead-letters.ts';

/**
 * The router's dead letters in the store: a copy of each message on the DLQ topic (events
 * the router could not route: unparseable, invalid_envelope, unknown_source, …) with the
 * story its headers tell and the raw bytes as read, ready to be replayed onto the raw topic
 * once the cause is fixed (a source added back, a schema relaxed).
 *
 * Its ids come from the sink dead letters' (their sequence on Postgres, their counter on
 * SQLite: see DEAD_LETTER_MIGRATIONS), so one id names one dead letter across both stages:
 * Pilot lists them together and replays `{ ids }` without asking which is which.
 */
function routerDeadLettersTable(t: { id: string; bytes: string; time: string; now: string }): string {
  return `create table if not exists router_dead_letters (
      id ${t.id},
      dlq_topic text not null,
      dlq_partition int not null,
      dlq_offset bigint not null,
      dlq_timestamp bigint not null,
      reason text not null,
      error text not null,
      config_version int,
      original_topic text,
      original_partition int,
      original_offset bigint,
      message_key ${t.bytes},
      raw ${t.bytes} not null,
      headers jsonb not null,
      dead_at ${t.time} not null default ${t.now},
      replayed_at ${t.time},
      replay_attempts int not null default 0,
      replay_error text,
      -- A DLQ message read again (a crash before the commit) is the same row. The append
      -- time is part of the identity so that a re-created DLQ topic, whose offsets start
      -- over, does not collide with the letters of the old one.
      unique (dlq_topic, dlq_partition, dlq_offset, dlq_timestamp)
    );
    create index if not exists router_dead_letters_pending on router_dead_letters (id) where replayed_at is null;`;
}

export const ROUTER_DEAD_LETTER_MIGRATIONS = [
  ...DEAD_LETTER_MIGRATIONS,
  {
    id: '0210_router_dead_letters',
    sql: routerDeadLettersTable({ id: "bigint primary key default nextval('sink_dead_letters_id_seq')", bytes: 'bytea', time: 'timestamptz', now: 'now()' }),
    // The ids: written by the insert, from the counter the sink letters use (DEAD_LETTER_MIGRATIONS).
    sqlite: routerDeadLettersTable({ id: 'integer not null unique', bytes: 'blob', time: 'text', now: '(now())' }),
  },
];

export interface RouterDeadLetter {
  id: number;
  stage: 'router';
  reason: string;
  error: string;
  configVersion: number | null;
  originalTopic: string | null;
  originalPartition: number | null;
  originalOffset: string | null;
  key: string | null;
  /** The value as the router read it: text when it is UTF-8, else base64 (see rawEncoding). */
  raw: string;
  rawEncoding: 'utf8' | 'base64';
  /** Where the letter sits on the DLQ topic. */
  dlq: { topic: string; partition: number; offset: string };
  deadAt: string;
  replayedAt: string | null;
  replayAttempts: number;
  replayError: string | null;
}

let migrated = new WeakSet<Store>();

export async function ensureRouterDeadLetterTable(store: Store): Promise<void> {
  if (migrated.has(store)) return;
  await migrate(store, ROUTER_DEAD_LETTER_MIGRATIONS);
  migrated.add(store);
}

/** For tests: forget which stores were migrated. */
export function resetRouterDeadLetterMigrationCache(): void {
  migrated = new WeakSet<Store>();
}

const intOrNull = (s: string | undefined) => (s !== undefined && /^-?\d+$/.test(s) ? s : null);

/**
 * Postgres text and jsonb cannot hold U+0000, which an error about unparseable bytes may
 * quote: shown as U+FFFD instead. (The raw bytes and the key are bytea, kept exactly.)
 */
const pgText = (s: string) => s.replaceAll('\u0000', '\uFFFD');

/**
 * Copies DLQ messages into the store, once each: a message already recorded (same DLQ
 * position) is skipped, so the recorder may read a batch again after a crash. Returns how
 * many rows were new.
 *
 * @example await recordRouterDeadLetters(store, batch.messages);
 */
export async function recordRouterDeadLetters(store: Store, messages: readonly IncomingMessage[]): Promise<number> {
  if (messages.length === 0) return 0;
  await ensureRouterDeadLetterTable(store);
  if (dialectOf(store) !== 'sqlite') return insertRouterDeadLetters(store, messages);
  // SQLite: the ids taken (shared with the sink letters) and the rows written in one
  // transaction; in chunks, within its 32766 parameters a statement.
  return store.transaction(async (tx) => {
    let added = 0;
    for (let i = 0; i < messages.length; i += SQLITE_CHUNK) {
      const chunk = messages.slice(i, i + SQLITE_CHUNK);
      added += await insertRouterDeadLetters(tx, chunk, await allocateDeadLetterIds(tx, chunk.length));
    }
    return added;
  });
}

const COLS = 13;
const SQLITE_CHUNK = 2000;

/** One multi-row insert; with `firstId` (SQLite), the rows take their ids from it on. Returns how many rows were new. */
async function insertRouterDeadLetters(q: Queryable, messages: readonly IncomingMessage[], firstId?: number): Promise<number> {
  const values: unknown[] = [];
  for (const m of messages) {
    const h = m.headers;
    const version = intOrNull(h[DLQ_HEADER.configVersion]);
    const partition = intOrNull(h[DLQ_HEADER.originalPartition]);
    const originalTopic = h[DLQ_HEADER.originalTopic];
    values.push(
      m.topic,
      m.partition,
      m.offset,
      m.timestamp,
      pgText(h[DLQ_HEADER.reason] ?? 'unknown'),
      pgText(h[DLQ_HEADER.error] ?? ''),
      version === null ? null : Number(version),
      originalTopic === undefined ? null : pgText(originalTopic),
      partition === null ? null : Number(partition),
      intOrNull(h[DLQ_HEADER.originalOffset]),
      m.key === null ? null : Buffer.from(m.key, 'utf8'),
      m.value ?? Buffer.alloc(0),
      JSON.stringify(Object.fromEntries(Object.entries(h).map(([k, v]) => [pgText(k), pgText(v)]))),
    );
  }
  // Postgres types the headers parameter as jsonb from its column: no cast (SQLite has none).
  const { rowCount } = await q.query(
    `insert into router_dead_letters (${firstId === undefined ? '' : 'id, '}dlq_topic, dlq_partition, dlq_offset, dlq_timestamp, reason, error, config_version,
       original_topic, original_partition, original_offset, message_key, raw, headers)
     values ${valueRows(messages.length, COLS, firstId)}
     on conflict (dlq_topic, dlq_partition, dlq_offset, dlq_timestamp) do nothing`,
    values,
  );
  return rowCount;
}

type Row = {
  id: string;
  dlq_topic: string;
  dlq_partition: number;
  dlq_offset: string;
  reason: string;
  error: string;
  config_version: number | null;
  original_topic: string | null;
  original_partition: number | null;
  original_offset: string | null;
  message_key: Uint8Array | null;
  raw: Uint8Array;
  dead_at: Date;
  replayed_at: Date | null;
  replay_attempts: number;
  replay_error: string | null;
};

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Bytes as text when they are valid UTF-8, else as base64, for JSON views.
 *
 * @example showBytes(Buffer.from('{"a":1}')); // { raw: '{"a":1}', rawEncoding: 'utf8' }
 */
export function showBytes(bytes: Uint8Array): { raw: string; rawEncoding: 'utf8' | 'base64' } {
  try {
    return { raw: utf8.decode(bytes), rawEncoding: 'utf8' };
  } catch {
    return { raw: Buffer.from(bytes).toString('base64'), rawEncoding: 'base64' };
  }
}

function toLetter(r: Row): RouterDeadLetter {
  return {
    id: Number(r.id),
    stage: 'router',
    reason: r.reason,
    error: r.error,
    configVersion: r.config_version,
    originalTopic: r.original_topic,
    originalPartition: r.original_partition,
    originalOffset: r.original_offset === null ? null : String(r.original_offset),
    key: r.message_key === null ? null : Buffer.from(r.message_key).toString('utf8'),
    ...showBytes(r.raw),
    dlq: { topic: r.dlq_topic, partition: r.dlq_partition, offset: String(r.dlq_offset) },
    deadAt: new Date(r.dead_at).toISOString(),
    replayedAt: r.replayed_at ? new Date(r.replayed_at).toISOString() : null,
    replayAttempts: r.replay_attempts,
    replayError: r.replay_error,
  };
}

/** One router dead letter by id; undefined when there is none (or it is a sink's). */
export async function getRouterDeadLetter(store: Store, id: number): Promise<RouterDeadLetter | undefined> {
  await ensureRouterDeadLetterTable(store);
  const { rows } = await store.query<Row>('select * from router_dead_letters where id = $1', [id]);
  return rows[0] ? toLetter(rows[0]) : undefined;
}

export async function listRouterDeadLetters(store: Store, opts: { includeReplayed?: boolean; limit?: number } = {}): Promise<RouterDeadLetter[]> {
  await ensureRouterDeadLetterTable(store);
  const { rows } = await store.query<Row>('select * from router_dead_letters where ($1 or replayed_at is null) order by id limit $2', [
    opts.includeReplayed ?? false,
    opts.limit ?? 100,
  ]);
  return rows.map(toLetter);
}

/** Router dead letters not replayed yet. */
export async function pendingRouterDeadLetters(store: Store): Promise<number> {
  await ensureRouterDeadLetterTable(store);
  const { rows } = await store.query<{ n: string }>('select count(*) as n from router_dead_letters where replayed_at is null');
  return Number(rows[0]?.n ?? 0);
}

/**
 * Puts router dead letters back on the raw topic, oldest first: `produce` gets the raw
 * bytes and the original key, so the event is routed again with the control plane of the
 * moment (an unknown source that was added back now routes). As for sink dead letters,
 * each row is locked (replayPick: `for update skip locked` on Postgres) and marked replayed
 * in the same transaction as its produce, so two replays at once never send a letter twice
 * and a replayed letter is never sent again (replayRows). A letter the router still cannot
 * route comes back as a new one.
 *
 * @example await replayRouterDeadLetters(store, { ids: [7] }, (key, value) => bus.produce(topics.raw, [{ key, value }]));
 */
export async function replayRouterDeadLetters(
  store: Store,
  opts: { ids?: number[]; limit?: number },
  produce: (key: string | null, value: Buffer) => Promise<void>,
): Promise<ReplayResult> {
  await ensureRouterDeadLetterTable(store);
  const pick = replayPick(dialectOf(store), '$1', '$2');
  return replayRows<Row>(
    store,
    'router_dead_letters',
    opts.limit ?? 1000,
    async (tx, failed) =>
      (
        await tx.query<Row>(
          `select * from router_dead_letters where replayed_at is null and ${pick.ids} order by id limit 1 ${pick.lock}`,
          [opts.ids ?? null, failed],
        )
      ).rows[0],
    (row) => produce(row.message_key === null ? null : Buffer.from(row.message_key).toString('utf8'), Buffer.from(row.raw)),
  );
}
