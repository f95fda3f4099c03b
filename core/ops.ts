import { Hono } from 'hono';
import type { Registry } from './metrics.ts';

/** A readiness check: `ok`, or `degraded` (still serving, but say so), or `down`. */
export type CheckStatus = 'ok' | 'degraded' | 'down';
export type ReadinessCheck = () => Promise<CheckStatus | { status: CheckStatus; detail?: string }>;

/** Runs the checks at once; a check that throws is down, with its message. */
async function runChecks(checks: Record<string, ReadinessCheck>): Promise<{ status: CheckStatus; checks: Record<string, { status: CheckStatus; detail?: string }> }> {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      try {
        const r = await check();
        return [name, typeof r === 'string' ? { status: r } : r] as const;
      } catch (err) {
        return [name, { status: 'down' as const, detail: (err as Error).message }] as const;
      }
    }),
  );
  const statuses = entries.map(([, r]) => r.status);
  const status: CheckStatus = statuses.includes('down') ? 'down' : statuses.includes('degraded') ? 'degraded' : 'ok';
  return { status, checks: Object.fromEntries(entries) };
}

/**
 * The operational routes every service has: `/healthz` (the process is alive and not stuck
 * for good: 503 when a liveness check is down, so that a supervisor restarts it), `/readyz`
 * (its dependencies answer and its work moves; 503 when any is down, 200 with `degraded`
 * when one is degraded) and `/metrics` (Prometheus text format).
 *
 * @example app.route('/', createOpsRoutes({ registry, checks: { bus: () => bus.ping().then(ok => ok ? 'ok' : 'down') } }));
 */
export function createOpsRoutes(opts: {
  registry: Registry;
  checks?: Record<string, ReadinessCheck>;
  /** Liveness checks: keep them to faults a restart may cure, or that must not go unnoticed. */
  liveness?: Record<string, ReadinessCheck>;
  /** While draining on shutdown, /readyz answers 503 so load balancers stop sending. */
  isDraining?: () => boolean;
  /** What /metrics serves instead of the registry's own (a cluster worker: the whole cluster's). */
  metrics?: () => Promise<string>;
}): Hono {
  const app = new Hono();
  app.get('/healthz', async (c) => {
    if (!opts.liveness || Object.keys(opts.liveness).length === 0) return c.json({ status: 'ok' });
    const r = await runChecks(opts.liveness);
    return c.json(r, r.status === 'down' ? 503 : 200);
  });
  app.get('/readyz', async (c) => {
    if (opts.isDraining?.()) return c.json({ status: 'down', checks: {}, draining: true }, 503);
    const r = await runChecks(opts.checks ?? {});
    return c.json(r, r.status === 'down' ? 503 : 200);
  });
  app.get('/metrics', async (c) => {
    const body = await (opts.metrics ?? (() => opts.registry.metrics()))();
    return c.body(body, 200, { 'content-type': opts.registry.contentType });
  });
  return app;
}
