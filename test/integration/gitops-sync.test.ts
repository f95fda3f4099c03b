import { AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gitCli, startGitServer } from '../helpers/git-server.ts';
import { serviceEnv, uniqueName, waitFor } from '../helpers/index.ts';
import { startOrrery, type OrreryProcess } from '../helpers/process.ts';

/**
 * GitOps part 2 end to end on a real kube-apiserver (with the real Deployment and
 * StatefulSet controllers; kwok plays the kubelet): a registry webhook becomes a commit,
 * the sync applies it, the Airflow workloads roll, and the deploy record says rolled out.
 */
const ns = uniqueName('team').replace(/_/g, '-').toLowerCase();
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
apiVersion: apps/v1
kind: Deployment
metadata: { name: webserver, namespace: ${ns} }
spec:
  replicas: 2
  selector: { matchLabels: { app: webserver } }
  template:
    metadata: { labels: { app: webserver } }
    spec:
      containers:
        - name: webserver
          image: registry.example.com/team/airflow:${tag} # {"$imagepolicy": "team-airflow"}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: worker, namespace: ${ns} }
spec:
  serviceName: airflow-worker
  replicas: 2
  selector: { matchLabels: { app: worker } }
  template:
    metadata: { labels: { app: worker } }
    spec:
      containers:
        - name: worker
          image: registry.example.com/team/airflow:${tag} # {"$imagepolicy": "team-airflow"}
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: canary, namespace: ${ns} }
spec:
  replicas: 1
  selector: { matchLabels: { app: canary } }
  template:
    metadata: { labels: { app: canary } }
    spec:
      containers:
        - name: canary
          image: registry.example.com/team/canary:1.0.0 # {"$imagepolicy": "canary"}
${extra}`;

const CONFIGMAP = `---
apiVersion: v1
kind: ConfigMap
metadata: { name: airflow-config, namespace: ${ns} }
data: { executor: CeleryExecutor }
`;
const TOKEN = 'registry-token-for-sync-0001';

describe('gitops sync to a real Kubernetes API', () => {
  let server: Awaited<ReturnType<typeof startGitServer>>;
  let orrery: OrreryProcess;
  let apps: AppsV1Api;
  let core: CoreV1Api;

  const push = (tag: string, repository = 'team/airflow') =>
    fetch(`${orrery.url}/webhooks/registry/distribution`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/vnd.docker.distribution.events.v2+json' },
      body: JSON.stringify({
        events: [{ id: uniqueName('e'), timestamp: new Date().toISOString(), action: 'push', target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'a'.repeat(64)}`, repository, tag }, request: { host: 'registry.example.com' } }],
      }),
    });
  const deploy = async (id: number) => (await (await fetch(`${orrery.url}/deploys/${id}`)).json()) as { state: string; error: string | null; history: Array<{ state: string }> };

  beforeAll(async () => {
    const kubeconfig = serviceEnv('KUBECONFIG');
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    apps = kc.makeApiClient(AppsV1Api);
    core = kc.makeApiClient(CoreV1Api);
    server = await startGitServer({ 'apps/airflow.yaml': manifests('1.0.0', CONFIGMAP) });
    const dir = await mkdtemp(join(tmpdir(), 'orrery-sync-'));
    await writeFile(
      join(dir, 'orrery.yaml'),
      `gitops:
  repo: { url: ${server.url}, token: \${GIT_TOKEN}, path: apps }
  receivers: { distribution: { token: \${REGISTRY_TOKEN} } }
  sync: { intervalMs: 3000, healthTimeoutMs: 20000 }
  policies:
    - { name: team-airflow, image: registry.example.com/team/airflow, tags: { semver: ">=1.0.0" } }
    - { name: canary, image: registry.example.com/team/canary, tags: { newest: true } }
`,
    );
    orrery = await startOrrery(['start', 'gitops'], {
      ORRERY_CONFIG: join(dir, 'orrery.yaml'),
      ORRERY_DATA_DIR: join(dir, 'data'),
      GIT_TOKEN: server.token,
      REGISTRY_TOKEN: TOKEN,
      KUBECONFIG: kubeconfig,
      DATABASE_URL: serviceEnv('DATABASE_URL'),
      DATABASE_SCHEMA: uniqueName('sync').toLowerCase(),
      KAFKA_BROKERS: '',
      REDIS_URL: '',
    });
    await waitFor(async () => ((await (await fetch(`${orrery.url}/sync/status`)).json()) as { conditions: Array<{ reason: string }> }).conditions[0]?.reason === 'ReconciliationSucceeded', {
      timeoutMs: 90_000,
      intervalMs: 500,
      what: 'the first sync to succeed',
    });
  });
  afterAll(async () => {
    await orrery?.stop();
    await server?.close();
    await core?.deleteNamespace({ name: ns }).catch(() => {});
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
    const work = await server.clone();
    const text = (await import('node:fs/promises')).readFile(join(work, 'apps/airflow.yaml'), 'utf8');
    await writeFile(join(work, 'apps/airflow.yaml'), (await text).replace(CONFIGMAP, ''));
    await gitCli(work, 'commit', '-am', 'remove the config map');
    await gitCli(work, 'push', '--quiet', 'origin', 'main');
    await fetch(`${orrery.url}/webhooks/git`, { method: 'POST' });
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
    await waitFor(async () => ['rolled-out', 'failed'].includes((await deploy(id!)).state), { timeoutMs: 120_000, intervalMs: 500, what: 'the canary deploy to end' });
    const d = await deploy(id!);
    expect(d.state).toBe('failed');
    expect(d.error).toMatch(/canary/);
    // The interval keeps syncing (and says Reconciling while it waits); each run that ends, ends unhealthy.
    const status = await waitFor(
      async () => {
        const s = (await (await fetch(`${orrery.url}/sync/status`)).json()) as { conditions: Array<{ type: string; status: string; reason: string; message: string }> };
        return s.conditions[0]?.reason === 'HealthCheckFailed' ? s : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250, what: 'a sync that ended with HealthCheckFailed' },
    );
    expect(status.conditions[0]).toMatchObject({ type: 'Ready', status: 'False' });
    expect(status.conditions[0]!.message).toContain('canary');
  });
});
