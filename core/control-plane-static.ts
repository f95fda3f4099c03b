import type { ControlPlaneConfig, ControlPlaneSnapshot } from './control-plane.ts';
import type { ControlPlaneSource } from './control-plane-source.ts';

/**
 * A deep-frozen snapshot of `config` at `version`, built on a copy: readers on the hot path
 * share one object, so nobody may change it under the others, and the caller's own objects
 * are neither frozen nor aliased.
 *
 * @example const snapshot = snapshotOf(3, { sources: [], destinations: [], routes: [] });
 */
export function snapshotOf(version: number, config: ControlPlaneConfig): ControlPlaneSnapshot {
  const { sources, destinations, routes } = structuredClone(config);
  return deepFreeze({ version, sources, destinations, routes });
}

/**
 * The control plane from the config file alone (no database): version 0, never changes.
 * Write keys stay as given; ingest hashes them itself and keeps only the hashes.
 *
 * @example
 *   const controlPlane = createStaticControlPlane({ sources: config.sources, destinations: config.destinations, routes: config.routes });
 *   controlPlane.current().routes;
 */
export function createStaticControlPlane(config: ControlPlaneConfig): ControlPlaneSource {
  const snapshot = snapshotOf(0, config);
  return {
    current() {
      return snapshot;
    },
    subscribe() {
      // Nothing ever changes, so there is nothing to call and nothing to undo.
      return () => {};
    },
    async close() {},
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
