import type { Envelope } from '../core/envelope.ts';
import type { Store } from '../core/store/types.ts';
import { ensureDeadLetterTable, type DeadLetter } from '../sinks/dead-letters.ts';

/**
 * The two reads of the dead-letter table that the sinks module has no need for: one letter
 * by id (to inspect it) and the pending count per destination (for the UI's badges). The
 * table and its row type belong to sinks/dead-letters.ts; only these queries live here.
 */

interface Row {
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
}

/**
 * @example const letter = await getDeadLetter(store, 42); // undefined when there is none
 */
export async function getDeadLetter(store: Store, id: number): Promise<DeadLetter | undefined> {
  await ensureDeadLetterTable(store);
  const { rows } = await store.query<Row>('select * from sink_dead_letters where id = $1', [id]);
  const r = rows[0];
  if (!r) return undefined;
  return {
    id: Number(r.id),
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

/**
 * Pending (not replayed) dead letters per destination.
 *
 * @example await pendingCounts(store); // { hook: 3 }
 */
export async function pendingCounts(store: Store): Promise<Record<string, number>> {
  await ensureDeadLetterTable(store);
  const { rows } = await store.query<{ destination_id: string; n: string }>(
    'select destination_id, count(*) as n from sink_dead_letters where replayed_at is null group by destination_id order by destination_id',
  );
  return Object.fromEntries(rows.map((r) => [r.destination_id, Number(r.n)]));
}
