import type { ControlPlaneSnapshot, DestinationConfig, RouteConfig } from '../../core/control-plane.ts';
import type { Envelope } from '../../core/envelope.ts';

export interface Match {
  route: RouteConfig;
  destination: DestinationConfig;
}

/**
 * The enabled routes from the event's source to enabled destinations, in config order.
 * A destination named by several routes gets the event from the first one only.
 */
export function matchRoutes(env: Envelope, snapshot: ControlPlaneSnapshot): Match[] {
  const matches: Match[] = [];
  const taken = new Set<string>();
  for (const route of snapshot.routes) {
    if (route.source !== env.sourceId || !route.enabled || taken.has(route.destination)) continue;
    const destination = snapshot.destinations.find((d) => d.id === route.destination);
    if (!destination?.enabled) continue;
    taken.add(route.destination);
    matches.push({ route, destination });
  }
  return matches;
}

/**
 * Segment's `integrations` object: `All: false` turns every destination off unless it is
 * named with a truthy value; a destination named `false` is off. A destination answers to
 * its `name` (Segment's catalog name, e.g. "Google Analytics"), its id, or its type.
 * Object values carry destination options and count as on.
 */
export function integrationAllows(env: Envelope, destination: DestinationConfig): boolean {
  const integrations = env.integrations;
  if (!integrations) return true;
  for (const name of [destination.name, destination.id, destination.type]) {
    if (name !== undefined && Object.hasOwn(integrations, name)) return integrations[name] !== false;
  }
  return integrations.All !== false;
}
