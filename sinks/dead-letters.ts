import type { Envelope } from '../core/envelope.ts';
import { migrate } from '../core/store/migrate.ts';
import { replayPick, replayRows, type ReplayResult } from '../core/store/replay-rows.ts';
import { dialectOf, type Queryable, type Store } from '../core/store/types.ts';

type Dialect = ReturnType<typeof dialectOf>;

/**
 * Dead letters in the store: events a destination would not take within the retry policy,
 * with the story of why (last error, HTTP status, response excerpt, attempts), ready to be
 * replayed once the destination is fixed.
 */
function sinkDeadLettersTable(t: { id: string; time: string; now: string }): string {
  return `create table if not exists sink_dead_letters (
      id ${t.id},
      destination_id text not null,
      message_id text not null,
      event jsonb not null,
      attempts int not null,
      last_error text not null,
      http_status int,
      response_excerpt text,
      first_attempt_at ${t.time} not null,
      dead_at ${t.time} not null default ${t.now},
      replayed_at ${t.time},
      replay_attempts int not null default 0,
      replay_error text
    );
    create index if not exists sink_dead_letters_pending on sink_dead_letters (destination_id, id) where replayed_at is null;`;
}

/**
 * One id names one dead letter whatever its stage (router/dead-letters.ts draws from the same
 * ids). On Postgres both tables take it from `sink_dead_letters_id_seq`. SQLite has no
 * sequences, so a one-row counter, `dead_letter_ids`, hands out blocks of ids
 * (allocateDeadLetterIds) and each insert writes them explicitly: a trigger instead could not
 * show the id to RETURNING, and a rewritten rowid-alias id could collide with the table's own
 * next rowid, hence `id integer not null unique` with no default (an insert that forgets the
 * id fails). Ids of rows an insert skips (`on conflict do nothing`) are left unused, as
 * nextval leaves them on Postgres.
 */
export const DEAD_LETTER_MIGRATIONS = [
  {
    id: '0200_sink_dead_letters',
    sql: sinkDeadLettersTable({ id: 'bigserial primary key', time: 'timestamptz', now: 'now()' }),
    sqlite: `${sinkDeadLettersTable({ id: 'integer not null unique', time: 'text', now: '(now())' })}
    create table if not exists dead_letter_ids (next integer not null);
    insert into dead_letter_ids (next) select 1 where not exists (select 1 from dead_letter_ids);`,
  },
];

export interface DeadLetter {
  id: number;
  /** Which stage gave up on the event (router dead letters: router/dead-letters.ts). */
  stage: 'sink';
  destinationId: string;
  messageId: string;
  event: Envelope;
  attempts: number;
  lastError: string;
  httpStatus: number | null;
  responseExcerpt: string | null;
  firstAttemptAt: string;
  deadAt: string;
  replayedAt: string | null;
  replayAttempts: number;
  replayError: string | null;
}

export interface NewDeadLetter {
  destinationId: string;
  event: Envelope;
  attempts: number;
  lastError: string;
  httpStatus?: number | undefined;
  responseExcerpt?: string | undefined;
  firstAttemptAt: number;
}

let migrated = new WeakSet<Store>();

export async function ensureDeadLetterTable(store: Store): Promise<void> {
  if (migrated.has(store)) return;
  await migrate(store, DEAD_LETTER_MIGRATIONS);
  migrated.add(store);
}

export async function recordDeadLetters(store: Store, letters: NewDeadLetter[]): Promise<void> {
  if (letters.length === 0) return;
  await ensureDeadLetterTable(store);
  // SQLite: the ids taken and the rows written in one transaction, so a failed insert takes none.
  if (dialectOf(store) === 'sqlite') await store.transaction((tx) => insertDeadLetters(tx, letters, 'sqlite'));
  else await insertDeadLetters(store, letters, 'postgres');
}

/**
 * The insert under recordDeadLetters, for a caller's transaction (the table must exist);
 * `dialect` is that of the caller's store (dialectOf).
 */
export async function insertDeadLetters(q: Queryable, letters: NewDeadLetter[], dialect: Dialect): Promise<void> {
  if (letters.length === 0) return;
  const values: unknown[] = [];
  for (const l of letters) {
    values.push(l.destinationId, l.event.messageId, JSON.stringify(l.event), l.attempts, l.lastError.slice(0, 2000), l.httpStatus ?? null, l.responseExcerpt ?? null, new Date(l.firstAttemptAt));
  }
  const firstId = dialect === 'sqlite' ? await allocateDeadLetterIds(q, letters.length) : undefined;
  await q.query(
    `insert into sink_dead_letters (${firstId === undefined ? '' : 'id, '}destination_id, message_id, event, attempts, last_error, http_status, response_excerpt, first_attempt_at)
     values ${valueRows(letters.length, 8, firstId)}`,
    values,
  );
}

/**
 * SQLite: the first of `n` fresh dead-letter ids, for either stage (see DEAD_LETTER_MIGRATIONS).
 * One statement, so no two callers get the same block, in a transaction or not.
 */
export async function allocateDeadLetterIds(q: Queryable, n: number): Promise<number> {
  const { rows } = await q.query<{ first: number }>('update dead_letter_ids set next = next + $1 returning next - $1 as first', [n]);
  return Number(rows[0]!.first);
}

/**
 * The VALUES rows of a multi-row insert: `count` rows of `cols` placeholders, numbered from
 * $1; with `firstId`, each row starts with its id, firstId, firstId + 1, … (SQLite, whose ids
 * the insert writes itself).
 */
export function valueRows(count: number, cols: number, firstId?: number): string {
  return Array.from({ length: count }, (_, i) => {
    const params = Array.from({ length: cols }, (_, k) => `$${i * cols + k + 1}`);
    return `(${firstId === undefined ? '' : `${firstId + i}, `}${params.join(', ')})`;
  }).join(', ');
}

type Row = {
  id: string;
  destination_id: string;
  message_id: string;
  event: Envelope;
  attempts: number;
  last_error: string;
  http_status: number | null;
  response_excerpt: string | null;
  first_attempt_at: Date;
  dead_at: Date;
  replayed_at: Date | null;
  replay_attempts: number;
  replay_error: string | null;
};

function toDeadLetter(r: Row): DeadLetter {
  return {
    id: Number(r.id),
    stage: 'sink',
    destinationId: r.destination_id,
    messageId: r.message_id,
    event: r.event,
    attempts: r.attempts,
    lastError: r.last_error,
    httpStatus: r.http_status,
    responseExcerpt: r.response_excerpt,
    firstAttemptAt: new Date(r.first_attempt_at).toISOString(),
    deadAt: new Date(r.dead_at).toISOString(),
    replayedAt: r.replayed_at ? new Date(r.replayed_at).toISOString() : null,
    replayAttempts: r.replay_attempts,
    replayError: r.replay_error,
  };
}

/** One letter by id, to inspect it; undefined when there is none. */
export async function getDeadLetter(store: Store, id: number): Promise<DeadLetter | undefined> {
  await ensureDeadLetterTable(store);
  const { rows } = await store.query<Row>('select * from sink_dead_letters where id = $1', [id]);
  return rows[0] ? toDeadLetter(rows[0]) : undefined;
}

export async function listDeadLetters(
  store: Store,
  opts: { destinationId?: string; includeReplayed?: boolean; limit?: number } = {},
): Promise<DeadLetter[]> {
  await ensureDeadLetterTable(store);
  const { rows } = await store.query<Row>(
    `select * from sink_dead_letters
      where (cast($1 as text) is null or destination_id = $1) and ($2 or replayed_at is null)
      order by id limit $3`,
    [opts.destinationId ?? null, opts.includeReplayed ?? false, opts.limit ?? 100],
  );
  return rows.map(toDeadLetter);
}

export type { ReplayResult };

/**
 * Re-sends dead letters through `deliver`, oldest first, in the destination's order, each
 * once (see replayRows: row lock and mark in the delivery's transaction). A failed replay
 * stays pending, with the error.
 *
 * @example await replayDeadLetters(store, { destinationId: 'hook' }, (dest, event) => deliver(dest, event));
 */
export async function replayDeadLetters(
  store: Store,
  opts: { destinationId?: string; ids?: number[]; limit?: number },
  deliver: (destinationId: string, event: Envelope) => Promise<void>,
): Promise<ReplayResult> {
  await ensureDeadLetterTable(store);
  const pick = replayPick(dialectOf(store), '$2', '$3');
  return replayRows<Row>(
    store,
    'sink_dead_letters',
    opts.limit ?? 1000,
    async (tx, failed) =>
      (
        await tx.query<Row>(
          `select * from sink_dead_letters
            where replayed_at is null and (cast($1 as text) is null or destination_id = $1) and ${pick.ids}
            order by id limit 1 ${pick.lock}`,
          [opts.destinationId ?? null, opts.ids ?? null, failed],
        )
      ).rows[0],
    (row) => deliver(row.destination_id, row.event),
  );
}

/** For tests: forget which stores were migrated. */
export function resetDeadLetterMigrationCache(): void {
  migrated = new WeakSet<Store>();
}
