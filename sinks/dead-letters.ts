import type { Envelope } from '../core/envelope.ts';
import { migrate } from '../core/store/migrate.ts';
import { replayRows, type ReplayResult } from '../core/store/replay-rows.ts';
import type { Queryable, Store } from '../core/store/types.ts';

/**
 * Dead letters in Postgres: events a destination would not take within the retry policy,
 * with the story of why (last error, HTTP status, response excerpt, attempts), ready to be
 * replayed once the destination is fixed.
 */
export const DEAD_LETTER_MIGRATIONS = [
  {
    id: '0200_sink_dead_letters',
    sql: `create table if not exists sink_dead_letters (
      id bigserial primary key,
      destination_id text not null,
      message_id text not null,
      event jsonb not null,
      attempts int not null,
      last_error text not null,
      http_status int,
      response_excerpt text,
      first_attempt_at timestamptz not null,
      dead_at timestamptz not null default now(),
      replayed_at timestamptz,
      replay_attempts int not null default 0,
      replay_error text
    );
    create index if not exists sink_dead_letters_pending on sink_dead_letters (destination_id, id) where replayed_at is null;`,
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
  await insertDeadLetters(store, letters);
}

/** The insert under recordDeadLetters, for a caller's transaction (the table must exist). */
export async function insertDeadLetters(q: Queryable, letters: NewDeadLetter[]): Promise<void> {
  if (letters.length === 0) return;
  const values: unknown[] = [];
  const rows = letters.map((l, i) => {
    values.push(l.destinationId, l.event.messageId, JSON.stringify(l.event), l.attempts, l.lastError.slice(0, 2000), l.httpStatus ?? null, l.responseExcerpt ?? null, new Date(l.firstAttemptAt));
    const b = i * 8;
    return `($${b + 1}, $${b + 2}, $${b + 3}::jsonb, $${b + 4}, $${b + 5}, $${b + 6}, $${b + 7}, $${b + 8})`;
  });
  await q.query(
    `insert into sink_dead_letters (destination_id, message_id, event, attempts, last_error, http_status, response_excerpt, first_attempt_at) values ${rows.join(', ')}`,
    values,
  );
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
      where ($1::text is null or destination_id = $1) and ($2 or replayed_at is null)
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
 * @example await replayDeadLetters(store, { destinationId: 'hook' }, (dest, events) => worker.deliverNow(events));
 */
export async function replayDeadLetters(
  store: Store,
  opts: { destinationId?: string; ids?: number[]; limit?: number },
  deliver: (destinationId: string, event: Envelope) => Promise<void>,
): Promise<ReplayResult> {
  await ensureDeadLetterTable(store);
  return replayRows<Row>(
    store,
    'sink_dead_letters',
    opts.limit ?? 1000,
    async (tx, failed) =>
      (
        await tx.query<Row>(
          `select * from sink_dead_letters
            where replayed_at is null and ($1::text is null or destination_id = $1) and ($2::bigint[] is null or id = any($2))
              and not (id = any($3::bigint[]))
            order by id limit 1 for update skip locked`,
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
