import type { ControlPlaneSnapshot } from './control-plane.ts';

/**
 * Where running services read the control plane from. `current()` is synchronous (the hot
 * path reads it per batch); changes arrive through `subscribe` without a restart.
 * Adapters: the config file alone (no database), or Postgres (versioned, LISTEN/NOTIFY).
 */
export interface ControlPlaneSource {
  current(): ControlPlaneSnapshot;
  /** Called after each change, with the new snapshot. Returns an unsubscribe function. */
  subscribe(onChange: (snapshot: ControlPlaneSnapshot) => void): () => void;
  close(): Promise<void>;
}
