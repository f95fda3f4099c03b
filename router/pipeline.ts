import type { IncomingMessage } from '../core/bus/types.ts';
import type { ControlPlaneSnapshot } from '../core/control-plane.ts';
import type { Envelope } from '../core/envelope.ts';
import { dedup, dedupKey } from './steps/dedup.ts';
import { applyFilter } from './steps/filter.ts';
import { integrationAllows, matchRoutes } from './steps/match-routes.ts';
import { parse } from './steps/parse.ts';
import { resolveSource } from './steps/resolve-source.ts';
import { applyTransforms } from './steps/transform.ts';

export interface RoutedOutput {
  destinationId: string;
  envelope: Envelope;
  /**
   * The envelope is the one read with its routing added last: no transform changed it and
   * it carried no routing of its own. The handler then writes the bytes as read plus the
   * routing (router/splice-routing.ts) instead of encoding it again.
   */
  asRead: boolean;
}

/** What became of one raw event. */
export type Outcome =
  | { kind: 'routed'; dedupKey: string; outputs: RoutedOutput[]; skipped: Array<{ destinationId: string; reason: string }> }
  | { kind: 'drop'; reason: string; dedupKey?: string; skipped?: Array<{ destinationId: string; reason: string }> }
  | { kind: 'dlq'; reason: string; error: string };

/**
 * The router's pipeline for one event: parse → resolve source → dedup → match routes →
 * per destination: integrations → filter → transform → stamp the routing. Pure: the
 * snapshot, the dedup lookups (`seen`) and the time come in; the outcome goes out, and one
 * handler performs it.
 *
 * @example const outcome = routeEvent(message, controlPlane.current(), seen, new Date().toISOString());
 */
export function routeEvent(message: IncomingMessage, snapshot: ControlPlaneSnapshot, seen: ReadonlySet<string>, routedAt: string): Outcome {
  const parsed = parse(message);
  if (parsed.kind !== 'ok') return parsed;
  return routeEnvelope(parsed.value, snapshot, seen, routedAt);
}

/** The pipeline after parsing, for callers that parsed already (the handler, per batch). */
export function routeEnvelope(env: Envelope, snapshot: ControlPlaneSnapshot, seen: ReadonlySet<string>, routedAt: string): Outcome {
  const source = resolveSource(env, snapshot);
  if (source.kind === 'dlq' || source.kind === 'drop') return source;

  const key = dedupKey(env);
  const fresh = dedup(env, seen);
  if (fresh.kind === 'drop') return fresh;

  const matches = matchRoutes(env, snapshot);
  if (matches.length === 0) return { kind: 'drop', reason: 'no_route', dedupKey: key };

  const outputs: RoutedOutput[] = [];
  const skipped: Array<{ destinationId: string; reason: string }> = [];
  for (const { route, destination } of matches) {
    if (!integrationAllows(env, destination)) {
      skipped.push({ destinationId: destination.id, reason: 'integrations_off' });
      continue;
    }
    const filtered = applyFilter(env, route.filter);
    if (!filtered.keep) {
      skipped.push({ destinationId: destination.id, reason: filtered.reason });
      continue;
    }
    const transformed = applyTransforms(env, route.transforms);
    outputs.push({
      destinationId: destination.id,
      envelope: { ...transformed, routing: { configVersion: snapshot.version, destinationId: destination.id, routedAt } },
      asRead: transformed === env && env.routing === undefined,
    });
  }
  if (outputs.length === 0) return { kind: 'drop', reason: skipped.length === 1 ? skipped[0]!.reason : 'filtered', dedupKey: key, skipped };
  return { kind: 'routed', dedupKey: key, outputs, skipped };
}
