import type { Queryable, Store } from './types.ts';

export interface ReplayResult {
  replayed: number[];
  failed: Array<{ id: number; error: string }>;
}

/**
 * The exactly-once loop under every dead-letter replay: one row at a time, oldest first,
 * `next` picks and locks a pending row (`for update skip locked`, skipping the ids that
 * failed in this run), `send` re-sends it, and the row is marked replayed in the same
 * transaction. Two replays running at once never send one row twice, and a replayed row
 * is never sent again. A failed send leaves the row pending, with its error.
 *
 * @example
 *   await replayRows(store, 'sink_dead_letters', 100, (tx, failed) => pickOne(tx, failed), (row) => deliver(row));
 */
export async function replayRows<R extends { id: string | number }>(
  store: Store,
  table: string,
  limit: number,
  next: (tx: Queryable, failedIds: number[]) => Promise<R | undefined>,
  send: (row: R) => Promise<void>,
): Promise<ReplayResult> {
  const result: ReplayResult = { replayed: [], failed: [] };
  for (let done = 0; done < limit; done++) {
    const outcome = await store.transaction(async (tx) => {
      const row = await next(tx, result.failed.map((f) => f.id));
      if (!row) return { kind: 'none' as const };
      const id = Number(row.id);
      try {
        await send(row);
      } catch (err) {
        const error = (err as Error).message;
        await tx.query(`update ${table} set replay_attempts = replay_attempts + 1, replay_error = $2 where id = $1`, [id, error.slice(0, 2000)]);
        return { kind: 'failed' as const, id, error };
      }
      await tx.query(`update ${table} set replayed_at = now(), replay_attempts = replay_attempts + 1, replay_error = null where id = $1`, [id]);
      return { kind: 'replayed' as const, id };
    });
    if (outcome.kind === 'none') break;
    if (outcome.kind === 'replayed') result.replayed.push(outcome.id);
    else result.failed.push({ id: outcome.id, error: outcome.error });
  }
  return result;
}
