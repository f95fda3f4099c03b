import { collectDefaultMetrics, Registry } from 'prom-client';

export type { Registry };

/**
 * One Prometheus registry per service (not prom-client's global one), with the process
 * metrics, so that several services in one process and tests never share counters.
 *
 * @example const registry = createRegistry({ service: 'ingest' });
 */
export function createRegistry(labels: Record<string, string> = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  collectDefaultMetrics({ register: registry, prefix: 'orrery_' });
  return registry;
}
