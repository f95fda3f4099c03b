import { isRetriable } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import { abortableSleep, backoffDelay, DEFAULT_BACKOFF } from '../../core/retry.ts';
import type { Store } from '../../core/store/types.ts';
import { migrate } from '../../core/store/migrate.ts';
import type { Applier } from '../apply/applier.ts';
import type { Health } from '../apply/health.ts';
import { objectId, toPrune } from '../apply/inventory.ts';
import { changedObjects, parseManifests } from '../apply/manifests.ts';
import type { Deploy, DeployLog } from '../deploys.ts';
import type { ManifestRepo } from '../source/git.ts';
import type { RolloutFailure } from './reverter.ts';

export type ConditionType = 'Ready' | 'Reconciling' | 'Stalled';

export interface SyncStatus {
  mode: 'apply' | 'plan';
  /** The last revision applied (or planned). */
  revision: string | null;
  conditions: Array<{ type: ConditionType; status: 'True' | 'False'; reason: string; message: string; at: string }>;
  /** Object ids applied by the last successful sync: the base of the next prune. */
  inventory: string[];
  /** In plan mode, or the last run's diff: what would be (or was) applied and pruned. */
  plan: { apply: string[]; prune: string[] };
  updatedAt: string;
}

export interface SyncStatusStore {
  load(): Promise<SyncStatus | undefined>;
  save(status: SyncStatus): Promise<void>;
}


export const SYNC_STATUS_MIGRATIONS = [
  {
    id: '0410_gitops_sync',
    sql: 'create table if not exists gitops_sync (name text primary key, status jsonb not null, updated_at timestamptz not null default now())',
    sqlite: 'create table if not exists gitops_sync (name text primary key, status jsonb not null, updated_at text not null default (now()))',
  },
];

/** One row per synced path, the status as a JSON document. */
export async function createPgSyncStatusStore(store: Store, name: string): Promise<SyncStatusStore> {
  await migrate(store, SYNC_STATUS_MIGRATIONS);
  return {
    async load() {
      const { rows } = await store.query<{ status: SyncStatus }>('select status from gitops_sync where name = $1', [name]);
      return rows[0]?.status;
    },
    async save(status) {
      await store.query('insert into gitops_sync (name, status) values ($1, $2) on conflict (name) do update set status = excluded.status, updated_at = now()', [
        name,
        JSON.stringify(status),
      ]);
    },
  };
}

export interface Sync {
  /** Asks for a run soon (a git push, a commit of ours, the interval); runs coalesce. */
  trigger(reason: string): void;
  runOnce(): Promise<SyncStatus>;
  status(): Promise<SyncStatus | undefined>;
  stop(): Promise<void>;
}

/**
 * The sync of one manifests path to the cluster, as a reconcile loop (Flux's
 * kustomize-controller is the model): fetch the branch, parse the manifests, apply them
 * with server-side apply in stages (CRDs and namespaces, config, workloads), prune what
 * left git by the stored inventory, wait for rollouts by kubectl's rules, and write the
 * status back with conditions (Ready, Reconciling, Stalled). Invalid manifests stall
 * without a retry; transient errors retry with backoff. Deploys whose commit the applied
 * revision contains move to `synced`, then `rolled-out` or `failed`; a failed one is handed to
 * `onRolloutFailed` (the reverter, by policy), and a deploy whose revert the revision
 * contains moves to `reverted` once the workloads its commit changed are healthy again. A
 * revert that does not roll out either stalls the sync (Stalled, RevertFailed) until the
 * branch moves.
 *
 * Without a cluster (`applier` undefined) it runs in plan mode: it diffs against the last
 * inventory and records the plan, so the single-process default shows what it would do;
 * each deploy the revision contains moves from `committed` to `planned`, its timeline
 * naming the objects its commit changes.
 *
 * @example const sync = createSync({ repo, applier, statusStore, deploys, logger, intervalMs: 60_000 });
 */
export function createSync(opts: {
  repo: ManifestRepo;
  applier: Applier | undefined;
  statusStore: SyncStatusStore;
  deploys: DeployLog;
  logger: Logger;
  intervalMs: number;
  healthTimeoutMs?: number;
  pollMs?: number;
  onEvent?: (e: { type: string; message: string }) => void;
  /** Called for each deploy this sync marked failed, newest first (the reverter, by policy). */
  onRolloutFailed?: (deploy: Deploy, failure: RolloutFailure) => Promise<void>;
}): Sync {
  const log = opts.logger.child({ unit: 'sync' });
  const stopping = new AbortController();
  let running: Promise<SyncStatus> | undefined;
  let again = false;
  let lastReady: string | undefined;

  const describe = (pending: Array<{ id: string; health: Health }>) => pending.map((p) => `${p.id}: ${'reason' in p.health ? p.health.reason : ''}`).join('; ');

  function condition(type: ConditionType, status: 'True' | 'False', reason: string, message: string) {
    return { type, status, reason, message, at: new Date().toISOString() };
  }

  async function finish(status: SyncStatus): Promise<SyncStatus> {
    await opts.statusStore.save(status);
    const ready = status.conditions.find((c) => c.type === 'Ready');
    const key = `${ready?.status}:${ready?.reason}`;
    // Events on transitions only.
    if (key !== lastReady) opts.onEvent?.({ type: ready?.reason ?? 'Unknown', message: ready?.message ?? '' });
    lastReady = key;
    return status;
  }

  async function reconcile(): Promise<SyncStatus> {
    const previous = (await opts.statusStore.load()) ?? undefined;
    const base: SyncStatus = {
      mode: opts.applier ? 'apply' : 'plan',
      revision: previous?.revision ?? null,
      conditions: [],
      inventory: previous?.inventory ?? [],
      plan: { apply: [], prune: [] },
      updatedAt: new Date().toISOString(),
    };
    const { revision, files } = await opts.repo.snapshot();
    // A revert that did not roll out either stalls the sync at that revision: re-applying it
    // would only repeat the wait, and reverting again would loop. A new commit (a fix, or a
    // person's own revert) is what moves it on.
    if (previous?.revision === revision && previous.conditions.some((c) => c.type === 'Stalled' && c.status === 'True' && c.reason === 'RevertFailed')) {
      log.debug({ revision }, 'stalled after a failed revert: waiting for a new commit');
      return previous;
    }
    let objects;
    try {
      objects = parseManifests(files);
    } catch (err) {
      return finish({ ...base, conditions: [condition('Ready', 'False', 'InvalidManifests', (err as Error).message), condition('Stalled', 'True', 'InvalidManifests', (err as Error).message)] });
    }
    const ids = objects.map(objectId);
    const prune = toPrune(base.inventory, ids);
    const plan = { apply: ids, prune };
    const recent = await opts.deploys.list({ limit: 200 });
    const included = [];
    // `synced` too: a run stopped while waiting (a shutdown) leaves them there for the next.
    for (const d of recent) if ((d.state === 'committed' || d.state === 'synced') && d.sha && (await opts.repo.contains(revision, d.sha))) included.push(d);
    // Deploys whose revert this revision contains: their rollout back is what we wait for.
    const reverting = [];
    for (const d of recent) if (d.state === 'reverting' && d.revertSha && (await opts.repo.contains(revision, d.revertSha))) reverting.push(d);

    if (!opts.applier) {
      log.info({ revision, apply: ids.length, prune: prune.length }, 'plan (no cluster configured)');
      // Each deploy the revision brings ends here, with what its commit would change.
      const all = new Set(ids);
      for (const d of included) {
        if (d.state !== 'committed') continue;
        const changed = [...changedObjects((await opts.repo.changes(d.sha!)).files)].filter((id) => all.has(id));
        await opts.deploys.transition(d.id, 'planned', { detail: planDetail(revision, changed, plan) });
      }
      return finish({ ...base, revision, plan, inventory: ids, conditions: [condition('Ready', 'True', 'Planned', `plan for ${revision.slice(0, 12)}: ${ids.length} to apply, ${prune.length} to prune`)] });
    }

    for (const o of objects) await opts.applier.apply(o, { force: true });
    for (const d of included) if (d.state === 'committed') await opts.deploys.transition(d.id, 'synced', { detail: `applied at ${revision.slice(0, 12)}` });
    const apiVersions = new Map(objects.map((o) => [`${o.apiVersion.includes('/') ? o.apiVersion.split('/')[0] : ''}/${o.kind}`, o.apiVersion]));
    const survivors: string[] = [];
    for (const id of prune) {
      try {
        await opts.applier.remove(id, (group, kind) => apiVersions.get(`${group}/${kind}`) ?? (group ? `${group}/v1` : 'v1'));
      } catch (err) {
        // Kept in the inventory, so the next run tries again.
        survivors.push(id);
        log.warn({ err, id }, 'prune failed');
      }
    }
    const inventory = [...ids, ...survivors];
    await opts.statusStore.save({ ...base, revision, plan, inventory, conditions: [condition('Reconciling', 'True', 'Progressing', `waiting for rollouts at ${revision.slice(0, 12)}`)] });

    const deadline = Date.now() + (opts.healthTimeoutMs ?? 5 * 60_000);
    const workloads = objects.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');
    // The workloads each revert in this revision rolls back (what its reverted commit changed).
    const rollingBack = new Map<number, Set<string>>();
    for (const d of reverting) rollingBack.set(d.id, changedObjects((await opts.repo.changes(d.sha!)).files));
    const revertedIds = new Set([...rollingBack.values()].flatMap((ids) => [...ids]));
    let pending: Array<{ id: string; health: Health }> = [];
    for (;;) {
      pending = [];
      for (const w of workloads) {
        const health = await opts.applier.health(w);
        if (!health || health.status === 'healthy') continue;
        pending.push({ id: objectId(w), health });
        // Only a revert deletes pods: the StatefulSet controller would wait for a pod of the
        // bad revision forever. A forward rollout never does this.
        if (revertedIds.has(objectId(w))) {
          const deleted = await opts.applier.forceRollback(w);
          if (deleted.length > 0) log.info({ workload: objectId(w), pods: deleted }, 'forced rollback: deleted pods stuck at the reverted revision');
        }
      }
      const failed = pending.find((p) => p.health.status === 'failed');
      if (failed || pending.length === 0 || Date.now() > deadline || stopping.signal.aborted) break;
      await abortableSleep(opts.pollMs ?? 1_000, stopping.signal);
    }
    if (stopping.signal.aborted && pending.length > 0) {
      // Stopped mid-wait: no verdict, and certainly no revert; the next run waits again.
      return finish({ ...base, revision, plan, inventory, conditions: [condition('Reconciling', 'True', 'Interrupted', `stopped while waiting for rollouts at ${revision.slice(0, 12)}`)] });
    }
    // A revert is judged by the workloads the reverted commit changed: a workload broken by
    // something else must not make a good rollback look failed (and stall the sync).
    const revertFailures: string[] = [];
    for (const d of reverting) {
      const still = pending.filter((p) => rollingBack.get(d.id)!.has(p.id));
      if (still.length === 0) {
        await opts.deploys.transition(d.id, 'reverted', { ...(d.error ? { error: d.error } : {}), detail: `rolled back, healthy at ${revision.slice(0, 12)}` });
        continue;
      }
      const message = describe(still);
      revertFailures.push(`deploy #${d.id}: ${message}`);
      await opts.deploys.transition(d.id, 'failed', { error: `the revert ${d.revertSha!.slice(0, 12)} did not roll out either: ${message}`, detail: 'sync stalled: needs a person' });
    }
    if (revertFailures.length > 0) {
      for (const d of included) await opts.deploys.transition(d.id, 'failed', { error: `rollout did not become healthy: ${describe(pending)}` });
      const message = `a revert did not roll out: ${revertFailures.join('; ')}`;
      log.error({ revision, message }, 'stalled: a revert did not roll out either; not reverting again');
      return finish({ ...base, revision, plan, inventory, conditions: [condition('Ready', 'False', 'RevertFailed', message), condition('Stalled', 'True', 'RevertFailed', message)] });
    }
    if (pending.length > 0) {
      const message = describe(pending);
      const error = `rollout did not become healthy: ${message}`;
      for (const d of included) await opts.deploys.transition(d.id, 'failed', { error });
      const status = await finish({ ...base, revision, plan, inventory, conditions: [condition('Ready', 'False', 'HealthCheckFailed', message)] });
      // Newest first: each revert then lands on a tip that still holds the later commits.
      for (const d of [...included].sort((a, b) => b.id - a.id)) await opts.onRolloutFailed?.(d, { reason: error, unhealthy: pending.map((p) => p.id) });
      return status;
    }
    for (const d of included) await opts.deploys.transition(d.id, 'rolled-out', { detail: `healthy at ${revision.slice(0, 12)}` });
    return finish({ ...base, revision, plan, inventory, conditions: [condition('Ready', 'True', 'ReconciliationSucceeded', `applied revision ${revision.slice(0, 12)}`)] });
  }

  async function runWithRetry(): Promise<SyncStatus> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await reconcile();
      } catch (err) {
        if (!isRetriable(err) || attempt >= 5 || stopping.signal.aborted) {
          log.error({ err }, 'sync failed');
          const previous = await opts.statusStore.load();
          return finish({
            mode: opts.applier ? 'apply' : 'plan',
            revision: previous?.revision ?? null,
            inventory: previous?.inventory ?? [],
            plan: previous?.plan ?? { apply: [], prune: [] },
            updatedAt: new Date().toISOString(),
            conditions: [condition('Ready', 'False', 'ReconciliationFailed', (err as Error).message)],
          });
        }
        await abortableSleep(backoffDelay(attempt, DEFAULT_BACKOFF), stopping.signal);
      }
    }
  }

  function runOnce(): Promise<SyncStatus> {
    if (running) {
      again = true;
      return running;
    }
    running = runWithRetry().finally(() => {
      running = undefined;
      if (again && !stopping.signal.aborted) {
        again = false;
        void runOnce();
      }
    });
    return running;
  }

  const timer = setInterval(() => void runOnce(), opts.intervalMs);
  timer.unref();

  return {
    trigger(reason) {
      log.debug({ reason }, 'sync triggered');
      void runOnce();
    },
    runOnce,
    status: () => opts.statusStore.load(),
    async stop() {
      clearInterval(timer);
      stopping.abort();
      await running?.catch(() => {});
    },
  };
}

/**
 * A planned deploy's timeline entry: the objects its commit changes, and the revision's plan.
 *
 * @example planDetail('ab12…', ['airflow-ml_worker_apps_StatefulSet'], { apply: ids, prune: [] })
 */
export function planDetail(revision: string, changed: readonly string[], plan: { apply: readonly string[]; prune: readonly string[] }): string {
  const shown = changed.slice(0, 8).join(', ') + (changed.length > 8 ? `, and ${changed.length - 8} more` : '');
  return (
    `plan at ${revision.slice(0, 12)}, nothing applied (no cluster): this commit changes ${changed.length} object${changed.length === 1 ? '' : 's'}` +
    `${changed.length > 0 ? ` (${shown})` : ''}; the revision has ${plan.apply.length} to apply, ${plan.prune.length} to prune`
  );
}
