import type { Store } from '../core/store/types.ts';
import { ensureDeadLetterTable } from '../sinks/dead-letters.ts';

export { getDeadLetter } from '../sinks/dead-letters.ts';

/**
 * The read of the dead-letter table that only Pilot needs: the pending count per
 * destination (for the UI's badges). The table, its rows and the other reads belong to
 * sinks/dead-letters.ts.
 */

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
