import type { ControlPlaneSnapshot, SourceConfig } from '../../core/control-plane.ts';
import type { Envelope } from '../../core/envelope.ts';
import { dlq, drop, ok, type StepResult } from '../result.ts';

/**
 * Finds the event's source in the control plane. An unknown source is a DLQ case (nothing
 * can route it, and someone should look); a disabled one drops its events.
 */
export function resolveSource(env: Envelope, snapshot: ControlPlaneSnapshot): StepResult<SourceConfig> {
  const source = snapshot.sources.find((s) => s.id === env.sourceId);
  if (!source) return dlq('unknown_source', `no source "${env.sourceId}" in control-plane version ${snapshot.version}`);
  if (!source.enabled) return drop('source_disabled');
  return ok(source);
}
