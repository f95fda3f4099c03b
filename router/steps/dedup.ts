import type { Envelope } from '../../core/envelope.ts';
import { drop, ok, type StepResult } from '../result.ts';

/** The dedup key of an event: messageIds are unique per source, as in Segment. */
export function dedupKey(env: Pick<Envelope, 'sourceId' | 'messageId'>): string {
  return `dedup:${env.sourceId}:${env.messageId}`;
}

/**
 * Drops an event whose key was already routed (`seen`: from the cache, plus the events
 * earlier in the same batch). Pure: the lookup happens before, in one round trip per batch.
 */
export function dedup(env: Envelope, seen: ReadonlySet<string>): StepResult<Envelope> {
  return seen.has(dedupKey(env)) ? drop('duplicate') : ok(env);
}
