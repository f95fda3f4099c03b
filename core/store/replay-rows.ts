import type { dialectOf, Queryable, Store } from './types.ts';

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

/**
 * The part of a replay's pick (the `next` of replayRows) that differs per dialect: `ids`, a
 * condition on the `id` column, keeps the ids asked for (the array parameter `asked`, null for
 * all) less those failed in this run (the array parameter `failed`); `lock` ends the select.
 * Postgres locks the row and skips rows another replay holds. SQLite binds an array as JSON
 * text, read with json_each, and needs no lock: its store runs one transaction at a time
 * (BEGIN IMMEDIATE on one connection), so a picked row is marked before the next pick.
 *
 * @example const pick = replayPick(dialectOf(store), '$1', '$2'); // `… where ${pick.ids} order by id limit 1 ${pick.lock}`
 */
export function replayPick(dialect: ReturnType<typeof dialectOf>, asked: string, failed: string): { ids: string; lock: string } {
  return dialect === 'sqlite'
    ? { ids: `(${asked} is null or id in (select value from json_each(${asked}))) and id not in (select value from json_each(${failed}))`, lock: '' }
    : { ids: `(${asked}::bigint[] is null or id = any(${asked})) and not (id = any(${failed}::bigint[]))`, lock: 'for update skip locked' };
}
