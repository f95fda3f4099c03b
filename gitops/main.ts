import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { Counter } from 'prom-client';
import { errorResponse } from '../core/contracts/http-error.ts';
import { bearerAuth } from '../core/auth.ts';
import type { Component, ComponentContext } from '../core/component.ts';
import { createErrorBoundary } from '../core/error-boundary.ts';
import { ConfigError, InputError, OrreryError } from '../core/errors.ts';
import { activeGitops } from '../core/gitops-config.ts';
import { createRefusalLog } from '../core/refusals.ts';
import { createDeployer } from './controller/deployer.ts';
import { createReverter } from './controller/reverter.ts';
import { createPgSyncStatusStore, createSync } from './controller/sync.ts';
import { createPgDeployLog, type DeployLog } from './deploys.ts';
import { verifyGitWebhook } from './git-webhook.ts';
import { policiesFor } from './policy.ts';
import { RECEIVERS } from './receivers/index.ts';
import { defaultWorkdir, openManifestRepo } from './source/git.ts';
import type { Applier } from './apply/applier.ts';

/** Registry webhooks are small; anything larger is refused before it is read. */
const MAX_WEBHOOK_BYTES = 1024 * 1024;

/**
 * The GitOps component's composition root (part 1): registry webhooks under
 * `/webhooks/registry/<provider>` become recorded deploy requests, which the deployer
 * turns into commits (or pull requests) to the manifests repository; `GET /deploys` and
 * `GET /deploys/:id` show their state (to the admin token, like `GET /sync/status`).
 *
 * @example const gitops = await createGitopsComponent(ctx);
 */
export async function createGitopsComponent(ctx: ComponentContext): Promise<Component & { deploys: DeployLog; idle(): Promise<void> }> {
  const log = ctx.logger.child({ component: 'gitops' });
  const cfg = activeGitops(ctx.config.gitops);
  // The deploy history names commits and images, the sync status the whole inventory.
  const adminToken = ctx.adminToken;
  if (!adminToken) throw new ConfigError('gitops serves /deploys and /sync/status to the admin token: the composition root must resolve one (PILOT_ADMIN_TOKEN, or generated)');
  const refusals = ctx.refusals ?? createRefusalLog({ logger: ctx.logger });
  const deploys = await createPgDeployLog(ctx.adapters.store);
  const app = new Hono();
  const unexpected = createErrorBoundary({ surface: 'gitops', logger: log, registry: ctx.registry });
  // As Pilot's: a client's error with its code; anything else logged and answered 500 `internal`.
  app.onError((err, c) => {
    if (err instanceof OrreryError && err.status < 500) return errorResponse(c, err);
    unexpected(err, c);
    return errorResponse(c, undefined);
  });
  const admin = bearerAuth(adminToken);
  app.use('/deploys', admin);
  app.use('/deploys/*', admin);
  app.use('/sync/status', admin);
  app.get('/deploys', async (c) => c.json({ deploys: await deploys.list({ limit: Math.min(500, Number(c.req.query('limit') ?? 100) || 100), ...(c.req.query('policy') ? { policy: c.req.query('policy')! } : {}) }) }));
  app.get('/deploys/:id', async (c) => {
    const id = Number(c.req.param('id'));
    const deploy = Number.isSafeInteger(id) ? await deploys.get(id) : undefined;
    if (!deploy) throw new InputError('not_found', `no deploy ${c.req.param('id')}`, 404);
    return c.json(deploy);
  });

  if (!cfg) {
    // `orrery start` puts the embedded default (gitops/embedded.ts) in place of an absent section.
    log.info(ctx.config.gitops?.enabled === false ? 'gitops: off (gitops.enabled: false): registry webhooks are off' : 'gitops: no gitops section in the config: registry webhooks are off');
    return { name: 'gitops', routes: app, deploys, idle: async () => {}, stop: async () => {} };
  }

  const settings = new Map<string, unknown>();
  for (const [provider, raw] of Object.entries(cfg.receivers)) {
    const receiver = RECEIVERS.get(provider);
    if (!receiver) throw new ConfigError(`gitops.receivers.${provider}: no such receiver (known: ${[...RECEIVERS.keys()].join(', ')})`);
    const parsed = receiver.settingsSchema.safeParse(raw);
    if (!parsed.success) throw new ConfigError(`gitops.receivers.${provider}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    settings.set(provider, parsed.data);
  }

  const repo = await openManifestRepo({
    url: cfg.repo.url,
    branch: cfg.repo.branch,
    token: cfg.repo.token,
    path: cfg.repo.path,
    valuesFiles: cfg.repo.valuesFiles,
    author: cfg.repo.author,
    workdir: cfg.repo.workdir ?? defaultWorkdir(ctx.config.dataDir, cfg.repo.url),
    logger: log,
  });
  // The Kubernetes client (~870 modules, ~45 MiB) only when there is a cluster: plan mode never loads it.
  const applier = cfg.sync.kubeconfig ? await kubeApplier(cfg.sync.kubeconfig) : undefined;
  const statusStore = await createPgSyncStatusStore(ctx.adapters.store, cfg.repo.path);
  const policies = new Map(cfg.policies.map((p) => [p.name, p]));
  // Late-bound: the reverter triggers the sync, and the sync calls the reverter.
  let triggerSync = (_reason: string) => {};
  const reverter = createReverter({ repo, deploys, policy: (name) => policies.get(name), logger: log, onCommitted: () => triggerSync('revert') });
  const sync = createSync({
    onRolloutFailed: (deploy, failure) => reverter.rolloutFailed(deploy, failure),
    repo,
    applier,
    statusStore,
    deploys,
    logger: log,
    intervalMs: cfg.sync.intervalMs,
    healthTimeoutMs: cfg.sync.healthTimeoutMs,
    onEvent: (e) => log.info({ event: e.type }, `sync: ${e.message}`),
  });
  triggerSync = (reason) => sync.trigger(reason);
  log.info({ mode: applier ? 'apply' : 'plan' }, applier ? 'sync: applying to the cluster in KUBECONFIG' : 'sync: plan mode (no cluster configured: set gitops.sync.kubeconfig, or KUBECONFIG with a gitops section)');
  sync.trigger('start');
  const deployer = createDeployer({
    repo,
    deploys,
    commitMessage: cfg.commitMessage,
    logger: log,
    github: cfg.github,
    baseBranch: cfg.repo.branch,
    onCommitted: () => sync.trigger('commit'),
  });
  app.get('/sync/status', async (c) => c.json((await sync.status()) ?? { conditions: [] }));
  /** The refusals' name for a registry receiver: one for all unknown ones, so the trace stays bounded. */
  const registryReceiver = (provider: string | undefined) => (provider !== undefined && settings.has(provider) ? `registry/${provider}` : 'registry/(unknown)');
  const limit = (receiverOf: (c: Context) => string) =>
    bodyLimit({
      maxSize: MAX_WEBHOOK_BYTES,
      onError: (c) => {
        refusals.record({ receiver: receiverOf(c), reason: 'payload_too_large', status: 400 });
        return errorResponse(c, new InputError('payload_too_large', `webhooks are at most ${MAX_WEBHOOK_BYTES} bytes`));
      },
    });
  // A git push webhook (GitHub, Gitea, GitLab…) only needs to say "look now", but only
  // a signed one, or one with the admin token, may say it (gitops/git-webhook.ts).
  app.post('/webhooks/git', limit(() => 'git'), async (c) => {
    const headers: Record<string, string> = {};
    c.req.raw.headers.forEach((v, k) => (headers[k.toLowerCase()] = v));
    try {
      verifyGitWebhook(headers, await c.req.text(), { secret: cfg.sync.webhookSecret, adminToken });
    } catch (err) {
      if (err instanceof OrreryError && err.status < 500) refusals.record({ receiver: 'git', reason: err.code, status: err.status });
      throw err;
    }
    sync.trigger('git push');
    return c.json({ success: true }, 202);
  });
  const received = new Counter({ name: 'orrery_gitops_webhooks_total', help: 'Registry webhooks, by provider and outcome', labelNames: ['provider', 'outcome'], registers: [ctx.registry] });
  log.info({ repo: cfg.repo.url.replace(/\/\/[^@/]*@/, '//'), receivers: [...settings.keys()], policies: cfg.policies.map((p) => p.name) }, 'gitops ready');

  async function handle(c: Context, provider: string, pathSecret?: string) {
    const receiver = RECEIVERS.get(provider);
    const providerSettings = settings.get(provider);
    if (!receiver || providerSettings === undefined) {
      refusals.record({ receiver: registryReceiver(provider), reason: 'unknown_receiver', status: 404 });
      throw new InputError('unknown_receiver', `no receiver configured for ${provider}`, 404);
    }
    const headers: Record<string, string> = {};
    c.req.raw.headers.forEach((v, k) => (headers[k.toLowerCase()] = v));
    let result;
    try {
      result = receiver.receive({ headers, body: await c.req.text(), pathSecret, now: Date.now() }, providerSettings);
    } catch (err) {
      received.inc({ provider, outcome: err instanceof OrreryError ? err.code : 'error' });
      // A registry retries a refused delivery forever: without a trace, a token mix-up is invisible.
      if (err instanceof OrreryError && err.status < 500) refusals.record({ receiver: `registry/${provider}`, reason: err.code, status: err.status });
      throw err;
    }
    if (result.kind === 'ignored') {
      received.inc({ provider, outcome: 'ignored' });
      return c.json({ success: true, ignored: result.reason });
    }
    const ids: number[] = [];
    let duplicates = 0;
    for (const push of result.pushes) {
      for (const policy of policiesFor(cfg!.policies, push)) {
        const { deploy, duplicate } = await deploys.record({ provider, deliveryId: result.deliveryId, policy: policy.name, push });
        if (duplicate) {
          duplicates++;
          continue;
        }
        ids.push(deploy.id);
        deployer.submit(deploy, policy, push);
      }
    }
    received.inc({ provider, outcome: ids.length > 0 ? 'accepted' : duplicates > 0 ? 'duplicate' : 'no_policy' });
    // A replayed delivery is answered 200 and does nothing; new work is 202 Accepted.
    return c.json({ success: true, deploys: ids, ...(duplicates > 0 ? { duplicates } : {}) }, ids.length > 0 ? 202 : 200);
  }

  const registryLimit = limit((c) => registryReceiver(c.req.param('provider')));
  app.post('/webhooks/registry/:provider', registryLimit, (c) => handle(c, c.req.param('provider')));
  app.post('/webhooks/registry/:provider/:secret', registryLimit, (c) => handle(c, c.req.param('provider'), c.req.param('secret')));

  return {
    name: 'gitops',
    routes: app,
    deploys,
    idle: () => deployer.idle(),
    async stop() {
      await deployer.stop();
      reverter.stop();
      await sync.stop();
    },
  };
}

async function kubeApplier(kubeconfig: string): Promise<Applier> {
  const { createKubeApplier, loadKubeConfig } = await import('./apply/applier.ts');
  return createKubeApplier(loadKubeConfig(kubeconfig)!);
}
