import type { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gitCli } from '../helpers/git-server.ts';
import { startGitopsSync, uniqueNamespace, workloadYaml } from '../helpers/gitops.ts';
import { waitFor } from '../helpers/index.ts';

/**
 * GitOps part 2 end to end on a real kube-apiserver (with the real Deployment and
 * StatefulSet controllers; kwok plays the kubelet): a registry webhook becomes a commit,
 * the sync applies it, the Airflow workloads roll, and the deploy record says rolled out.
 */
const ns = uniqueNamespace('team');
const manifests = (tag: string, extra = '') => `apiVersion: v1
kind: Namespace
metadata:
  name: ${ns}
---
apiVersion: v1
kind: Service
metadata: { name: airflow-worker, namespace: ${ns} }
spec:
  clusterIP: None
  selector: { app: worker }
  ports: [{ name: logs, port: 8793 }]
---
${workloadYaml('Deployment', { namespace: ns, name: 'webserver', image: `registry.example.com/team/airflow:${tag}`, policy: 'team-airflow', replicas: 2 })}---
${workloadYaml('StatefulSet', { namespace: ns, name: 'worker', image: `registry.example.com/team/airflow:${tag}`, policy: 'team-airflow', replicas: 2 })}---
${workloadYaml('Deployment', { namespace: ns, name: 'canary', image: 'registry.example.com/team/canary:1.0.0', policy: 'canary' })}${extra}`;

const CONFIGMAP = `---
apiVersion: v1
kind: ConfigMap
metadata: { name: airflow-config, namespace: ${ns} }
data: { executor: CeleryExecutor }
`;
describe('gitops sync to a real Kubernetes API', () => {
  let sync: Awaited<ReturnType<typeof startGitopsSync>>;
  let apps: AppsV1Api;
  let core: CoreV1Api;
  const push = (tag: string, repository = 'team/airflow') => sync.push(tag, repository);
  const deploy = (id: number) => sync.deploy(id);

  beforeAll(async () => {
    sync = await startGitopsSync(
      { 'apps/airflow.yaml': manifests('1.0.0', CONFIGMAP) },
      `  sync: { intervalMs: 3000, healthTimeoutMs: 20000 }
  policies:
    - { name: team-airflow, image: registry.example.com/team/airflow, tags: { semver: ">=1.0.0" } }
    - { name: canary, image: registry.example.com/team/canary, tags: { newest: true } }
`,
    );
    ({ apps, core } = sync);
    await sync.untilSynced('ReconciliationSucceeded');
  });
  afterAll(async () => {
    await sync?.stop(ns);
  });

  it('a registry webhook rolls the webserver Deployment and the worker StatefulSet, and the deploy says rolled out', async () => {
    const started = Date.now();
    const res = await push('1.1.0');
    expect(res.status).toBe(202);
    const [id] = ((await res.json()) as { deploys: number[] }).deploys;
    await waitFor(async () => ['rolled-out', 'failed'].includes((await deploy(id!)).state), { timeoutMs: 90_000, intervalMs: 250, what: 'the rollout' });
    const d = await deploy(id!);
    expect(d.state, d.error ?? '').toBe('rolled-out');
    expect(d.history.map((h) => h.state)).toEqual(['received', 'committed', 'synced', 'rolled-out']);
    console.info(`gitops: webhook → rolled out in ${Date.now() - started} ms`);
    const web = await apps.readNamespacedDeployment({ name: 'webserver', namespace: ns });
    expect(web.spec!.template.spec!.containers[0]!.image).toBe('registry.example.com/team/airflow:1.1.0');
    expect(web.status!.updatedReplicas).toBe(2);
    expect(web.status!.availableReplicas).toBe(2);
    const sts = await apps.readNamespacedStatefulSet({ name: 'worker', namespace: ns });
    expect(sts.spec!.template.spec!.containers[0]!.image).toBe('registry.example.com/team/airflow:1.1.0');
    expect(sts.status!.currentRevision).toBe(sts.status!.updateRevision);
    expect(sts.status!.readyReplicas).toBe(2);
  });

  it('an object removed from git is pruned; a hand edit in the cluster is put back', async () => {
    await core.readNamespacedConfigMap({ name: 'airflow-config', namespace: ns });
    const work = await sync.server.clone();
    const text = await readFile(join(work, 'apps/airflow.yaml'), 'utf8');
    await writeFile(join(work, 'apps/airflow.yaml'), text.replace(CONFIGMAP, ''));
    await gitCli(work, 'commit', '-am', 'remove the config map');
    await gitCli(work, 'push', '--quiet', 'origin', 'main');
    expect((await sync.gitPush()).status).toBe(202);
    await waitFor(
      async () => {
        try {
          await core.readNamespacedConfigMap({ name: 'airflow-config', namespace: ns });
          return false;
        } catch {
          return true;
        }
      },
      { timeoutMs: 60_000, intervalMs: 500, what: 'the config map pruned' },
    );
    await rm(work, { recursive: true, force: true });

    // Drift: someone scales the webserver by hand; the next sync puts git's value back.
    await apps.replaceNamespacedDeploymentScale({ name: 'webserver', namespace: ns, body: { metadata: { name: 'webserver', namespace: ns }, spec: { replicas: 5 } } });
    await waitFor(async () => (await apps.readNamespacedDeployment({ name: 'webserver', namespace: ns })).spec!.replicas === 5, { what: 'the hand edit' });
    await waitFor(async () => (await apps.readNamespacedDeployment({ name: 'webserver', namespace: ns })).spec!.replicas === 2, {
      timeoutMs: 60_000,
      intervalMs: 500,
      what: 'replicas back to 2',
    });
  });

  it('a rollout that cannot become healthy is marked failed', async () => {
    // kwok keeps pods of an image named *never-ready* unready, like a readiness probe that never passes.
    const res = await push('never-ready-1', 'team/canary');
    const [id] = ((await res.json()) as { deploys: number[] }).deploys;
    // It ends after some health timeouts (20 s each): 80 s alone here, past 2 minutes when
    // the machine is loaded, hence the longer timeouts of this test.
    await waitFor(async () => ['rolled-out', 'failed'].includes((await deploy(id!)).state), { timeoutMs: 200_000, intervalMs: 500, what: 'the canary deploy to end' });
    const d = await deploy(id!);
    expect(d.state).toBe('failed');
    expect(d.error).toMatch(/canary/);
    // The interval keeps syncing; each run that ends, ends unhealthy. /sync/status says
    // Reconciling while a run waits (healthTimeoutMs, 20 s), and the next run can start the
    // moment one ends, so polling it for the verdict races it on a loaded machine (it lost
    // once in a full run). The sync logs each change of verdict, so the log is read instead.
    const verdict = await waitFor(() => sync.orrery.logs.find((l) => l.event === 'HealthCheckFailed'), { timeoutMs: 120_000, what: 'a sync run that ended HealthCheckFailed' });
    expect(verdict.msg).toContain('canary');
    const after = sync.orrery.logs.slice(sync.orrery.logs.indexOf(verdict));
    expect(after.filter((l) => l.event === 'ReconciliationSucceeded')).toEqual([]);
    const status = await sync.status();
    expect(status.conditions[0]?.reason).not.toBe('ReconciliationSucceeded');
  }, 360_000);
});
