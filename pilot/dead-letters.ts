import { InputError } from '../core/errors.ts';
import type { ReplayResult } from '../core/store/replay-rows.ts';
import type { Store } from '../core/store/types.ts';
import { getRouterDeadLetter, listRouterDeadLetters, pendingRouterDeadLetters, replayRouterDeadLetters, type RouterDeadLetter } from '../router/dead-letters.ts';
import { ensureDeadLetterTable, getDeadLetter, listDeadLetters, type DeadLetter } from '../sinks/dead-letters.ts';

/**
 * Dead letters of both stages as one list, the way Pilot and `orrery dlq` show them: the
 * router's (events it could not route, recorded from the DLQ topic) and the sinks' (events
 * a destination would not take). Each table belongs to its stage (router/dead-letters.ts,
 * sinks/dead-letters.ts); their ids come from one source (a sequence on Postgres, a counter
 * on SQLite: DEAD_LETTER_MIGRATIONS), so an id names one letter.
 */

export type AnyDeadLetter = DeadLetter | RouterDeadLetter;
export type Stage = AnyDeadLetter['stage'];

export interface DeadLetterFilter {
  stage?: Stage | undefined;
  /** Sink letters of one destination (router letters have no destination). */
  destinationId?: string | undefined;
  ids?: number[] | undefined;
  limit?: number | undefined;
}

/** Which stages a filter covers: none for a destination with the router stage (router letters have no destination). */
function stagesOf(f: DeadLetterFilter): { sink: boolean; router: boolean } {
  return { sink: f.stage !== 'router', router: f.stage !== 'sink' && f.destinationId === undefined };
}

/**
 * Dead letters, oldest first, of both stages unless the filter narrows them.
 *
 * @example await listAllDeadLetters(store, { stage: 'router', limit: 50 });
 */
export async function listAllDeadLetters(store: Store, f: DeadLetterFilter & { includeReplayed?: boolean }): Promise<AnyDeadLetter[]> {
  // A filter that matches nothing lists nothing: query parameters cannot say they exclude each other.
  const stages = stagesOf(f);
  const limit = f.limit ?? 100;
  const opts = { includeReplayed: f.includeReplayed ?? false, limit };
  const sink = stages.sink ? await listDeadLetters(store, { ...opts, ...(f.destinationId ? { destinationId: f.destinationId } : {}) }) : [];
  const router = stages.router ? await listRouterDeadLetters(store, opts) : [];
  return [...sink, ...router].sort((a, b) => a.id - b.id).slice(0, limit);
}

/** One letter of either stage by id; undefined when there is none. */
export async function getAnyDeadLetter(store: Store, id: number): Promise<AnyDeadLetter | undefined> {
  return (await getDeadLetter(store, id)) ?? (await getRouterDeadLetter(store, id));
}

/**
 * Replays the pending letters the filter selects, each once: sink letters to their
 * destinations through `deliverSinks` (sinks/replay.ts), router letters onto the raw topic
 * through `republish` (the raw bytes and the original key). `limit` counts both.
 *
 * @example await replayAllDeadLetters(store, { ids: [3, 9] }, { replaySinks: (o) => replayToDestinations(store, snapshot, o), republish });
 */
export async function replayAllDeadLetters(
  store: Store,
  f: DeadLetterFilter,
  via: {
    replaySinks: (opts: { destinationId?: string; ids?: number[]; limit?: number }) => Promise<ReplayResult>;
    republish: (key: string | null, value: Buffer) => Promise<void>;
  },
): Promise<ReplayResult> {
  // An action on a contradiction is refused rather than done on nothing (the document says so: the body's `not`).
  if (f.destinationId !== undefined && f.stage === 'router') throw new InputError('invalid_request', 'router dead letters have no destination: drop destinationId or the router stage', 400);
  const stages = stagesOf(f);
  const limit = f.limit ?? 1000;
  const ids = f.ids ? { ids: f.ids } : {};
  const sink = stages.sink ? await via.replaySinks({ ...ids, limit, ...(f.destinationId ? { destinationId: f.destinationId } : {}) }) : { replayed: [], failed: [] };
  const left = limit - sink.replayed.length - sink.failed.length;
  const router = stages.router && left > 0 ? await replayRouterDeadLetters(store, { ...ids, limit: left }, via.republish) : { replayed: [], failed: [] };
  return { replayed: [...sink.replayed, ...router.replayed], failed: [...sink.failed, ...router.failed] };
}

/**
 * Pending (not replayed) sink dead letters per destination.
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

/**
 * Pending dead letters per stage.
 *
 * @example await pendingByStage(store); // { sink: 3, router: 1 }
 */
export async function pendingByStage(store: Store): Promise<Record<Stage, number>> {
  const perDestination = await pendingCounts(store);
  return { sink: Object.values(perDestination).reduce((a, b) => a + b, 0), router: await pendingRouterDeadLetters(store) };
}
