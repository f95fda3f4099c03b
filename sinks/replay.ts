import type { ControlPlaneSnapshot } from '../core/control-plane.ts';
import type { Envelope } from '../core/envelope.ts';
import { OrreryError } from '../core/errors.ts';
import type { Store } from '../core/store/types.ts';
import { replayDeadLetters, type ReplayResult } from './dead-letters.ts';
import { DESTINATIONS } from './destinations/index.ts';
import { destinationSettings } from './destinations/types.ts';

/**
 * Replays dead letters straight to their destinations, with the destination settings of
 * the current control plane (fixed settings are the usual reason to replay). Each letter is
 * delivered once: see replayDeadLetters. The Pilot API and `orrery dlq replay` call this.
 *
 * @example await replayToDestinations(store, controlPlane.current(), { destinationId: 'hook' });
 */
export async function replayToDestinations(
  store: Store,
  snapshot: ControlPlaneSnapshot,
  opts: { destinationId?: string; ids?: number[]; limit?: number },
  fetchImpl: typeof fetch = globalThis.fetch,
): Promise<ReplayResult> {
  const configs = new Map<string, { deliver: (e: Envelope) => Promise<void> }>();
  function target(destinationId: string) {
    let t = configs.get(destinationId);
    if (t) return t;
    const destination = snapshot.destinations.find((d) => d.id === destinationId);
    if (!destination) throw new OrreryError('DESTINATION_GONE', `destination ${destinationId} is no longer configured`);
    const module = DESTINATIONS.get(destination.type);
    if (!module) throw new OrreryError('DESTINATION_TYPE_UNKNOWN', `no sink for type ${destination.type}`);
    const config = module.configSchema.parse(destinationSettings(destination));
    t = {
      deliver: (e) => module.deliver([e], config, { fetch: fetchImpl, now: Date.now, signal: AbortSignal.timeout(30_000) }),
    };
    configs.set(destinationId, t);
    return t;
  }
  return replayDeadLetters(store, opts, (destinationId, event) => target(destinationId).deliver(event));
}
