import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gitCli } from '../helpers/git-server.ts';
import { startGitopsSync, uniqueNamespace, workloadYaml, type DeployRecord } from '../helpers/gitops.ts';
import { waitFor } from '../helpers/index.ts';

/**
 * A rollout that cannot become healthy, on the real API server (kwok keeps pods of an image
 * named *never-ready* unready, like a readiness probe that never passes): the deploy is
 * marked failed; with `onFailure: revert` a revert commit lands in the manifests repo and
 * the next sync rolls the Airflow webserver Deployment and worker StatefulSet back; with
 * the policy off nothing is committed; a revert that does not roll out either stalls.
 */
const ns = uniqueNamespace('revert');
const deployment = (name: string, image: string, policy: string, replicas = 1) => `---\n${workloadYaml('Deployment', { namespace: ns, name, image, policy, replicas })}`;
const AIRFLOW = `apiVersion: v1
kind: Namespace
metadata: { name: ${ns} }
${deployment('webserver', 'registry.example.com/team/airflow:1.0.0', 'team-airflow', 2)}---
${workloadYaml('StatefulSet', { namespace: ns, name: 'worker', image: 'registry.example.com/team/airflow:1.0.0', policy: 'team-airflow', replicas: 2 })}`;

describe('a failed rollout, reverted by policy', () => {
  let sync: Awaited<ReturnType<typeof startGitopsSync>>;

  /** The deploy a webhook push created, once it stops moving (or reaches `until`). */
  async function pushAndSettle(tag: string, repository: string, until: string[]): Promise<DeployRecord> {
    const res = await sync.push(tag, repository);
    expect(res.status).toBe(202);
    const [id] = ((await res.json()) as { deploys: number[] }).deploys;
    return waitFor(
      async () => {
        const d = await sync.deploy(id!);
        return until.includes(d.state) ? d : undefined;
      },
      { timeoutMs: 110_000, intervalMs: 250, what: `deploy ${id} to reach ${until.join(' or ')}` },
    );
  }
  const gitLog = async (format: string) => {
    const work = await sync.server.clone();
    try {
      return (await gitCli(work, 'log', `--format=${format}`, 'main')).trim().split('\n');
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  };

  beforeAll(async () => {
    sync = await startGitopsSync(
      {
        'apps/airflow.yaml': AIRFLOW,
        'apps/canary.yaml': deployment('canary', 'registry.example.com/team/canary:1.0.0', 'canary'),
        'apps/stuck.yaml': deployment('stuck', 'registry.example.com/team/stuck:1.0.0', 'stuck'),
      },
      `  sync: { intervalMs: 3000, healthTimeoutMs: 8000 }
  policies:
    - { name: team-airflow, image: registry.example.com/team/airflow, onFailure: revert }
    - { name: canary, image: registry.example.com/team/canary }
    - { name: stuck, image: registry.example.com/team/stuck, onFailure: revert }
`,
    );
    await sync.untilSynced('ReconciliationSucceeded');
  });
  afterAll(async () => {
    await sync?.stop(ns);
  });

  it('with onFailure: revert, a revert is committed and the webserver and workers roll back to the previous image', async () => {
    const d = await pushAndSettle('never-ready-2', 'team/airflow', ['reverted', 'rolled-out']);
    expect(d.history.map((h) => h.state)).toEqual(['received', 'committed', 'synced', 'failed', 'reverting', 'reverted']);
    expect(d.revertSha).toMatch(/^[0-9a-f]{40}$/);
    // Why it was reverted stays on the record (Pilot's rollout alert says it).
    expect(d.error).toMatch(/rollout did not become healthy: .*(webserver|worker)/);

    // The revert is the tip of main, written like `git revert` writes it, and it restores
    // the files exactly as they were before the deploy's commit.
    const [head] = await gitLog('%H');
    expect(head).toBe(d.revertSha);
    const work = await sync.server.clone();
    const message = await gitCli(work, 'log', '-1', '--format=%B', d.revertSha!);
    expect(message).toMatch(/^Revert "deploy\(team-airflow\): registry\.example\.com\/team\/airflow:never-ready-2"\n/);
    expect(message).toContain(`This reverts commit ${d.sha}.`);
    expect(message).toContain(`Orrery deploy #${d.id} did not roll out`);
    expect(await gitCli(work, 'diff', `${d.sha}~1`, d.revertSha!)).toBe('');
    expect(await readFile(join(work, 'apps/airflow.yaml'), 'utf8')).toBe(AIRFLOW);
    await rm(work, { recursive: true, force: true });

    const web = await sync.apps.readNamespacedDeployment({ name: 'webserver', namespace: ns });
    expect(web.spec!.template.spec!.containers[0]!.image).toBe('registry.example.com/team/airflow:1.0.0');
    expect(web.status!.updatedReplicas).toBe(2);
    expect(web.status!.availableReplicas).toBe(2);
    expect(web.status!.replicas).toBe(2);
    const sts = await sync.apps.readNamespacedStatefulSet({ name: 'worker', namespace: ns });
    expect(sts.spec!.template.spec!.containers[0]!.image).toBe('registry.example.com/team/airflow:1.0.0');
    expect(sts.status!.readyReplicas).toBe(2);
    expect(sts.status!.currentRevision).toBe(sts.status!.updateRevision);
    const pods = await sync.core.listNamespacedPod({ namespace: ns, labelSelector: 'app=worker' });
    expect(pods.items.map((p) => p.spec!.containers[0]!.image)).toEqual(['registry.example.com/team/airflow:1.0.0', 'registry.example.com/team/airflow:1.0.0']);
  });

  it('with the policy off, the deploy is marked failed and nothing is committed', async () => {
    const d = await pushAndSettle('never-ready-1', 'team/canary', ['failed', 'rolled-out']);
    expect(d.state).toBe('failed');
    expect(d.error).toMatch(/canary/);
    // A later sync run has started, so the run that failed the deploy (and would have
    // reverted it) is over.
    await waitFor(async () => Date.parse((await sync.status()).updatedAt) > Date.parse(d.updatedAt), { timeoutMs: 60_000, intervalMs: 250, what: 'a later sync run' });
    const [head, previous] = await gitLog('%H %s');
    expect(head).toBe(`${d.sha} deploy(canary): registry.example.com/team/canary:never-ready-1`);
    expect(previous).toMatch(/^[0-9a-f]{40} Revert "deploy\(team-airflow\)/);
    const after = await sync.deploy(d.id);
    expect(after.state).toBe('failed');
    expect(after.revertSha).toBeNull();
    expect(after.history.map((h) => h.state)).toEqual(['received', 'committed', 'synced', 'failed']);
  });

  it('a revert that does not roll out either stalls the sync, and is never reverted in turn', async () => {
    // Someone breaks the stuck Deployment by hand, so the image before the deploy is bad too.
    const work = await sync.server.clone();
    const file = join(work, 'apps/stuck.yaml');
    await writeFile(file, (await readFile(file, 'utf8')).replace('stuck:1.0.0', 'stuck:never-ready-0'));
    await gitCli(work, 'commit', '-qam', 'stuck: a bad image, by hand');
    await gitCli(work, 'push', '--quiet', 'origin', 'main');
    await rm(work, { recursive: true, force: true });

    const d = await pushAndSettle('never-ready-1', 'team/stuck', ['failed', 'rolled-out', 'reverted']);
    // `failed` is reached twice: wait for the second one, after the revert.
    const settled = await waitFor(
      async () => {
        const now = await sync.deploy(d.id);
        return now.history.some((h) => h.state === 'reverting') && now.state !== 'reverting' ? now : undefined;
      },
      { timeoutMs: 110_000, intervalMs: 250, what: 'the revert of the stuck deploy to roll out or fail' },
    );
    expect(settled.history.map((h) => h.state)).toEqual(['received', 'committed', 'synced', 'failed', 'reverting', 'failed']);
    expect(settled.error).toMatch(new RegExp(`the revert ${settled.revertSha!.slice(0, 12)} did not roll out either: .*stuck`));

    const status = await sync.untilSynced('RevertFailed');
    expect(status.conditions).toEqual([
      expect.objectContaining({ type: 'Ready', status: 'False', reason: 'RevertFailed' }),
      expect.objectContaining({ type: 'Stalled', status: 'True', reason: 'RevertFailed' }),
    ]);
    expect(status.revision).toBe(settled.revertSha);
    // One revert of the stuck deploy, on top; none of the revert itself.
    const subjects = await gitLog('%H %s');
    expect(subjects[0]).toBe(`${settled.revertSha} Revert "deploy(stuck): registry.example.com/team/stuck:never-ready-1"`);
    expect(subjects.filter((s) => s.includes('Revert "Revert'))).toEqual([]);
    expect(subjects.filter((s) => s.includes('Revert "deploy(stuck)'))).toHaveLength(1);
    const stuck = await sync.apps.readNamespacedDeployment({ name: 'stuck', namespace: ns });
    expect(stuck.spec!.template.spec!.containers[0]!.image).toBe('registry.example.com/team/stuck:never-ready-0');
  });
});
