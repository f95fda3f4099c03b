import { AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGitServer } from './git-server.ts';
import { serviceEnv, uniqueName, waitFor } from './index.ts';
import { startOrrery } from './process.ts';

export interface DeployRecord {
  id: number;
  state: string;
  sha: string | null;
  revertSha: string | null;
  error: string | null;
  updatedAt: string;
  history: Array<{ state: string; detail?: string }>;
}

export interface SyncStatusView {
  revision: string | null;
  updatedAt: string;
  conditions: Array<{ type: string; status: string; reason: string; message: string }>;
}

const REGISTRY_TOKEN = 'registry-token-for-sync-0001';
/** The admin token /deploys, /sync/status and (without a signature) /webhooks/git want. */
export const ADMIN_TOKEN = 'gitops-sync-admin-token-0001';
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

/**
 * A manifests repository on a real git server, and `orrery start gitops` syncing it to the
 * test cluster (KUBECONFIG) with Postgres for state: what the GitOps sync tests share.
 * `gitopsYaml` is the `policies` and `sync` part of the gitops config.
 */
export async function startGitopsSync(files: Record<string, string>, gitopsYaml: string) {
  const kubeconfig = serviceEnv('KUBECONFIG');
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const server = await startGitServer(files);
  const dir = await mkdtemp(join(tmpdir(), 'orrery-sync-'));
  await writeFile(
    join(dir, 'orrery.yaml'),
    `gitops:
  repo: { url: ${server.url}, token: \${GIT_TOKEN}, path: apps }
  receivers: { distribution: { token: \${REGISTRY_TOKEN} } }
${gitopsYaml}`,
  );
  const orrery = await startOrrery(['start', 'gitops'], {
    ORRERY_CONFIG: join(dir, 'orrery.yaml'),
    ORRERY_DATA_DIR: join(dir, 'data'),
    GIT_TOKEN: server.token,
    REGISTRY_TOKEN,
    PILOT_ADMIN_TOKEN: ADMIN_TOKEN,
    KUBECONFIG: kubeconfig,
    DATABASE_URL: serviceEnv('DATABASE_URL'),
    DATABASE_SCHEMA: uniqueName('sync').toLowerCase(),
    KAFKA_BROKERS: '',
    REDIS_URL: '',
  });
  const status = async () => (await (await fetch(`${orrery.url}/sync/status`, { headers: admin })).json()) as SyncStatusView;
  return {
    server,
    orrery,
    apps: kc.makeApiClient(AppsV1Api),
    core: kc.makeApiClient(CoreV1Api),
    /** A Distribution (registry:2) push notification for `registry.example.com/<repository>:<tag>`. */
    push: (tag: string, repository: string) =>
      fetch(`${orrery.url}/webhooks/registry/distribution`, {
        method: 'POST',
        headers: { authorization: `Bearer ${REGISTRY_TOKEN}`, 'content-type': 'application/vnd.docker.distribution.events.v2+json' },
        body: JSON.stringify({
          events: [{ id: uniqueName('e'), timestamp: new Date().toISOString(), action: 'push', target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'a'.repeat(64)}`, repository, tag }, request: { host: 'registry.example.com' } }],
        }),
      }),
    deploy: async (id: number) => (await (await fetch(`${orrery.url}/deploys/${id}`, { headers: admin })).json()) as DeployRecord,
    /** The git push webhook, with the admin token: "look at git now". */
    gitPush: () => fetch(`${orrery.url}/webhooks/git`, { method: 'POST', headers: admin }),
    status,
    /** Waits for a sync run to end with the Ready reason given. */
    untilSynced: (reason: string, timeoutMs = 90_000) =>
      waitFor(
        async () => {
          const s = await status();
          return s.conditions[0]?.reason === reason ? s : undefined;
        },
        { timeoutMs, intervalMs: 250, what: `a sync that ended with ${reason}` },
      ),
    async stop(namespace: string) {
      await orrery.stop();
      await server.close();
      await kc.makeApiClient(CoreV1Api).deleteNamespace({ name: namespace }).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A Deployment or StatefulSet (serviceName `airflow-<name>`) whose one container's image is
 * marked for an image policy, as a YAML document (no `---`).
 */
export function workloadYaml(kind: 'Deployment' | 'StatefulSet', o: { namespace: string; name: string; image: string; policy: string; replicas?: number }): string {
  return `apiVersion: apps/v1
kind: ${kind}
metadata: { name: ${o.name}, namespace: ${o.namespace} }
spec:
${kind === 'StatefulSet' ? `  serviceName: airflow-${o.name}\n` : ''}  replicas: ${o.replicas ?? 1}
  selector: { matchLabels: { app: ${o.name} } }
  template:
    metadata: { labels: { app: ${o.name} } }
    spec:
      containers:
        - name: ${o.name}
          image: ${o.image} # {"$imagepolicy": "${o.policy}"}
`;
}

/** A namespace name of our own on the shared test cluster. */
export const uniqueNamespace = (prefix: string) => uniqueName(prefix).replace(/_/g, '-').toLowerCase();
