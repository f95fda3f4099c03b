import { join } from 'node:path';
import { Hono } from 'hono';
import { resolveAdminToken } from '../core/auth.ts';
import type { Component, ComponentContext } from '../core/component.ts';
import { createErrorBoundary, defaultOnError } from '../core/error-boundary.ts';
import { activeGitops } from '../core/gitops-config.ts';
import { createRefusalLog } from '../core/refusals.ts';
import { createPgDeployLog, type DeployLog } from '../gitops/deploys.ts';
import { createAlertMonitor, createWebhookNotifier, defaultRules, type AlertRule } from './alerts.ts';
import { createPilotApi } from './api.ts';
import { pilotConfigFrom, type PilotConfig } from './config.ts';
import { createEventBuffer, startRawTopicDebugger, type RawTopicDebugger } from './debugger.ts';
import { createDemoReceiver } from './demo.ts';
import { demoSenderSecrets } from './demo-setup.ts';
import { createMetricsSampler } from './metrics.ts';
import { createPilotUi } from './ui/pages.ts';

/** What the composition root may hand Pilot besides the context; all optional. */
export interface PilotDeps {
  /** Pilot's settings; default: pilotConfigFrom(process.env). */
  pilot?: PilotConfig;
  /**
   * The deploy log. Default: the `deploys` table when there is a database; without one,
   * gitops keeps its log in memory, so pass gitops' own (`createGitopsComponent(ctx)).deploys`)
   * for Pilot to see it.
   */
  deploys?: DeployLog;
  /** Replace the default alert rules. */
  rules?: AlertRule[];
  fetch?: typeof fetch;
}

/**
 * The Pilot component: one API (`/api/*`, Bearer admin token) and web UI (`/`) over both
 * halves of Orrery: the control plane, dead letters, deploys, metrics and alerts, and a
 * live event debugger fed by the raw topic. Its metrics and alerts read the registry of
 * the process it runs in, so run it in the same process as the pipeline (`orrery start`).
 *
 * @example
 *   // bin/orrery.ts, COMPONENTS:
 *   pilot: createPilotComponent,
 */
export async function createPilotComponent(ctx: ComponentContext, deps: PilotDeps = {}): Promise<Component & { closeStreams(): void }> {
  const log = ctx.logger.child({ component: 'pilot' });
  // The one place Pilot reads the environment, and only when the caller did not parse it.
  const cfg = deps.pilot ?? pilotConfigFrom(process.env);

  // The composition root resolves the token once for every component (ctx.adminToken);
  // Pilot built on its own (tests, embedding) resolves its own.
  const adminToken = cfg.adminToken ?? ctx.adminToken ?? resolveAdminToken({ configured: undefined, logger: ctx.logger });
  const refusals = ctx.refusals ?? createRefusalLog({ logger: ctx.logger });
  const unexpectedError = createErrorBoundary({ surface: 'pilot', logger: log, registry: ctx.registry });

  const deploys = deps.deploys ?? (await createPgDeployLog(ctx.adapters.store));

  const sampler = createMetricsSampler({
    registry: ctx.registry,
    everyMs: cfg.sampleMs,
    // Enough for the charts' quarter of an hour and for the alert window.
    keepMs: Math.max(15 * 60_000, cfg.alerts.windowMs + cfg.sampleMs),
    onError: (err) => log.warn({ err }, 'pilot: metrics sample failed'),
  });

  const rules = deps.rules ?? defaultRules(cfg.alerts);
  const alerts = createAlertMonitor({
    rules,
    intervalMs: cfg.alerts.intervalMs,
    logger: log,
    notify: cfg.alertWebhook ? createWebhookNotifier({ url: cfg.alertWebhook, logger: log, ...(deps.fetch ? { fetch: deps.fetch } : {}) }) : undefined,
    input: async () => {
      // A fresh sample is the "now"; the kept ones reach back over the window.
      const current = await sampler.peek();
      const recent = deploys ? await deploys.list({ limit: 200 }).catch(() => []) : [];
      return { now: current.at, samples: [...sampler.samples(), current], deploys: recent };
    },
  });

  const events = createEventBuffer({ perSource: 200 });
  const demo = await createDemoReceiver({
    file: join(ctx.config.dataDir, 'pilot', 'demo-deliveries.jsonl'),
    secrets: () => demoSenderSecrets(ctx.controlPlane.current()),
    refusals,
  });
  const dbg: RawTopicDebugger = await startRawTopicDebugger({ bus: ctx.adapters.bus, topic: ctx.topics.raw, buffer: events, logger: log });

  const api = createPilotApi({
    adminToken,
    controlPlane: ctx.controlPlane,
    store: ctx.adapters.store,
    republish: (key, value) => ctx.adapters.bus.produce(ctx.topics.raw, [{ key, value }]),
    deploys,
    policies: activeGitops(ctx.config.gitops)?.policies ?? [],
    sampler,
    sampleMs: cfg.sampleMs,
    alerts,
    alertWebhookConfigured: cfg.alertWebhook !== undefined,
    events,
    debuggerStatus: () => ({ group: dbg.group, ready: dbg.ready(), failure: dbg.failure() }),
    demo,
    streamMaxMs: cfg.streamMaxMs,
    logger: log,
    refusals,
    unexpectedError,
  });

  const routes = new Hono();
  // The API answers its own errors; the demo receiver's and the UI's come here.
  routes.onError(defaultOnError(unexpectedError));
  routes.route('/', api.routes);
  routes.route('/', demo.routes);
  routes.route('/', createPilotUi());

  sampler.start();
  alerts.start();
  log.info(
    { alertWebhook: cfg.alertWebhook ? new URL(cfg.alertWebhook).host : null, rules: rules.map((r) => r.id), debuggerGroup: dbg.group },
    'pilot ready: UI at /, API at /api (OpenAPI at /api/openapi.json)',
  );

  return {
    name: 'pilot',
    routes,
    checks: {
      // The debugger is a convenience: say when it is not working, never fail readiness over it.
      debugger: async () => (dbg.failure() ? { status: 'degraded', detail: `live debugger: ${dbg.failure()}` } : 'ok'),
    },
    closeStreams: () => api.closeStreams(),
    async drain() {
      api.closeStreams();
    },
    async stop() {
      api.closeStreams();
      sampler.stop();
      await alerts.stop();
      await dbg.stop();
    },
  };
}
