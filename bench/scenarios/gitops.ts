import { AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { mkdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gitCli, startGitServer } from '../../test/helpers/git-server.ts';
import type { BenchContext, Scenario } from '../lib/context.ts';
import { dropSchema, localDatabase, startOrreryProcess, type RunningOrrery } from '../lib/orrery.ts';
import { row, type MetricRow } from '../lib/report.ts';
import { pollUntil, sleep, summarize, type Summary } from '../lib/stats.ts';

/**
 * The peers' default polling intervals, as published: how long a change can wait before
 * they even look. Flux's GitRepository `interval` (1m in its docs and the default of
 * `flux create source git`); Argo CD's repository polling, `timeout.reconciliation`
 * (180 s by default). Both can be cut short by webhooks of their own; these are what they
 * do out of the box.
 */
const FLUX_INTERVAL_MS = 60_000;
const ARGO_CD_RECONCILIATION_MS = 180_000;
const REGISTRY_TOKEN = 'bench-registry-token-0001';
/** /deploys and /sync/status want the admin token. */
const ADMIN_TOKEN = 'bench-admin-token-0001-abcdef';
const admin = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
const IMAGE = 'registry.example.com/bench/app';

interface DeployView {
  id: number;
  state: string;
  sha: string | null;
  error: string | null;
  history: Array<{ state: string; at: string; detail?: string }>;
}

interface Run {
  run: number;
  tag: string;
  deploy: number;
  /** Webhook POST sent → its 202. */
  webhookMs: number;
  /** Webhook POST sent → the deploy says committed (after the push was accepted). */
  commitMs: number;
  /** Webhook POST sent → the deploy says rolled out (a cluster only). */
  rolloutMs?: number;
  sha: string;
  /** The manifests repository's main is the deploy's commit (checked with git). */
  pushed: boolean;
  /** The cluster's Deployment runs the tag, its one replica updated and available (a cluster only). */
  live?: boolean;
  states: string[];
}

/** Only this machine is ever used: the test cluster and Postgres on loopback. */
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/;

function localCluster(path: string | undefined): { kubeconfig: string; kc: KubeConfig } | { skipped: string } {
  if (!path) return { skipped: 'KUBECONFIG not set: webhook → commit only (the sync runs in plan mode)' };
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  const server = kc.getCurrentCluster()?.server ?? '';
  const host = URL.canParse(server) ? new URL(server).hostname : '';
  if (!LOOPBACK.test(host)) return { skipped: `KUBECONFIG points at ${host || 'no server'}, not this machine: webhook → commit only` };
  return { kubeconfig: path, kc };
}


const manifests = (namespace: string | undefined, tag: string) =>
  `${namespace ? `apiVersion: v1\nkind: Namespace\nmetadata: { name: ${namespace} }\n---\n` : ''}apiVersion: apps/v1
kind: Deployment
metadata: { name: app${namespace ? `, namespace: ${namespace}` : ''} }
spec:
  replicas: 1
  selector: { matchLabels: { app: app } }
  template:
    metadata: { labels: { app: app } }
    spec:
      containers:
        - name: app
          image: ${IMAGE}:${tag} # {"$imagepolicy": "bench-app"}
`;

/** A Distribution (registry:2) push notification, as the receiver tests send it. */
const pushEvent = (tag: string, id: string) =>
  JSON.stringify({
    events: [
      {
        id,
        timestamp: new Date().toISOString(),
        action: 'push',
        target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'b'.repeat(64)}`, repository: 'bench/app', tag },
        request: { host: 'registry.example.com' },
      },
    ],
  });

const constant = (value: number, n: number): Summary => summarize(Array<number>(n).fill(value));

/**
 * GitOps: `orrery start gitops` as a child, a manifests repository on a real git
 * smart-HTTP server (test/helpers/git-server.ts: git http-backend), and a registry webhook
 * per run. Clocked from the webhook POST to the deploy's `committed` (recorded once the
 * push is accepted) and, with the test cluster in KUBECONFIG, to `rolled-out` (a real
 * kube-apiserver with the Deployment controller; kwok plays the kubelet). The baselines are
 * the peers' default polling intervals: the time they can take to notice the change at all.
 */
export const scenario: Scenario = {
  name: 'gitops',
  description: 'registry webhook → commit pushed (→ rolled out, with KUBECONFIG), against Flux and Argo CD polling',
  async run(ctx: BenchContext) {
    const s = ctx.settings;
    const notes: string[] = [];
    const cluster = localCluster(process.env.KUBECONFIG);
    if ('skipped' in cluster) notes.push(cluster.skipped);
    const kube = 'kc' in cluster ? cluster : undefined;
    const databaseUrl = localDatabase(process.env.DATABASE_URL);
    if (!databaseUrl) notes.push('no DATABASE_URL on this machine: the deploy log is in the embedded SQLite store');
    const namespace = kube ? `bench-${ctx.runId}-gitops`.toLowerCase() : undefined;
    const schema = `bench_${ctx.runId}_gitops`.toLowerCase();
    const timeoutMs = s.timeoutS * 1000;

    const server = await startGitServer({ 'apps/app.yaml': manifests(namespace, '1.0.0') });
    let orrery: RunningOrrery | undefined;
    const runs: Run[] = [];
    try {
      const dir = join(ctx.tmpDir, 'gitops');
      mkdirSync(dir, { recursive: true });
      const config = join(dir, 'orrery.yaml');
      // The interval is long so that every sync measured is the one our own commit starts.
      writeFileSync(
        config,
        `# written by bench/scenarios/gitops.ts
gitops:
  repo: { url: ${server.url}, token: \${GIT_TOKEN}, path: apps }
  receivers: { distribution: { token: \${REGISTRY_TOKEN} } }
  sync: { intervalMs: 600000, healthTimeoutMs: ${timeoutMs} }
  policies:
    - { name: bench-app, image: ${IMAGE}, tags: { semver: ">=1.0.0" } }
`,
      );
      orrery = await startOrreryProcess(ctx, {
        components: ['gitops'],
        prefix: `bench-${ctx.runId}-gitops`,
        groupTag: 'gitops',
        label: 'gitops',
        env: {
          // The gitops config replaces the bench's ingest/router/sinks one.
          ORRERY_CONFIG: config,
          GIT_TOKEN: server.token,
          REGISTRY_TOKEN,
          PILOT_ADMIN_TOKEN: ADMIN_TOKEN,
          KUBECONFIG: kube?.kubeconfig ?? '',
          DATABASE_URL: databaseUrl ?? '',
          DATABASE_SCHEMA: schema,
          KAFKA_BROKERS: '',
          REDIS_URL: '',
        },
      });
      const url = orrery.url;
      const status = async () => (await (await fetch(`${url}/sync/status`, admin)).json()) as { revision: string | null; conditions: Array<{ reason: string }> };
      const settled = kube ? 'ReconciliationSucceeded' : 'Planned';
      await pollUntil(async () => ((await status()).conditions[0]?.reason === settled ? true : undefined), `the first sync (${settled})`, timeoutMs, 100);

      const once = async (run: number, tag: string): Promise<Run> => {
        const sent = Date.now();
        const res = await fetch(`${url}/webhooks/registry/distribution`, {
          method: 'POST',
          headers: { authorization: `Bearer ${REGISTRY_TOKEN}`, 'content-type': 'application/vnd.docker.distribution.events.v2+json' },
          body: pushEvent(tag, `${ctx.runId}-${tag}`),
        });
        const answered = Date.now();
        if (res.status !== 202) throw new Error(`the webhook was answered ${res.status}: ${await res.text()}`);
        const id = ((await res.json()) as { deploys: number[] }).deploys[0]!;
        const deploy = async () => (await (await fetch(`${url}/deploys/${id}`, admin)).json()) as DeployView;
        const until = (states: string[], what: string) =>
          pollUntil(async () => {
            const d = await deploy();
            return states.includes(d.state) ? d : undefined;
          }, what, timeoutMs, 20);
        // The times are the deploy's own (its history), so the polling adds nothing to them.
        const at = (d: DeployView, state: string) => Date.parse(d.history.find((h) => h.state === state)?.at ?? '') - sent;
        let d = await until(['committed', 'planned', 'synced', 'rolled-out', 'failed', 'skipped'], `deploy #${id} committed`);
        if (!d.sha) throw new Error(`deploy #${id} was not committed: ${d.state} ${d.error ?? ''}`);
        if (kube) {
          d = await until(['rolled-out', 'failed'], `deploy #${id} rolled out`);
          if (d.state !== 'rolled-out') throw new Error(`deploy #${id} did not roll out: ${d.error ?? d.state}`);
        }
        // The next run starts once the sync has taken this commit: runs do not overlap.
        await pollUntil(async () => ((await status()).revision === d.sha ? true : undefined), `the sync at ${d.sha!.slice(0, 12)}`, timeoutMs, 50);
        const head = (await gitCli(server.bare, 'rev-parse', 'main')).trim();
        let live: boolean | undefined;
        if (kube) {
          const app = await kube.kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: 'app', namespace: namespace! });
          live = app.spec!.template.spec!.containers[0]!.image === `${IMAGE}:${tag}` && app.status?.updatedReplicas === 1 && app.status?.availableReplicas === 1;
        }
        return {
          run,
          tag,
          deploy: id,
          webhookMs: answered - sent,
          commitMs: at(d, 'committed'),
          ...(kube ? { rolloutMs: at(d, 'rolled-out') } : {}),
          sha: d.sha!,
          pushed: head === d.sha,
          ...(live !== undefined ? { live } : {}),
          states: d.history.map((h) => h.state),
        };
      };

      // Warm-up: the first deploy pays for the clone's first fetch and the first apply.
      const warm = await once(0, '1.0.1');
      ctx.log(`  warm-up: webhook → commit ${warm.commitMs} ms${warm.rolloutMs !== undefined ? `, → rolled out ${warm.rolloutMs} ms` : ''}`);
      await sleep(200);
      for (let run = 1; run <= s.runs; run++) {
        const r = await once(run, `1.0.${run + 1}`);
        runs.push(r);
        ctx.log(`  run ${run}/${s.runs}: webhook → 202 ${r.webhookMs} ms, → commit pushed ${r.commitMs} ms${r.rolloutMs !== undefined ? `, → rolled out ${r.rolloutMs} ms` : ''}`);
      }
      const unpushed = runs.filter((r) => !r.pushed);
      if (unpushed.length > 0) notes.push(`runs ${unpushed.map((r) => r.run).join(', ')}: main on the git server was not the deploy's commit afterwards`);
      const notLive = runs.filter((r) => r.live === false);
      if (notLive.length > 0) notes.push(`runs ${notLive.map((r) => r.run).join(', ')}: rolled out, yet the cluster's Deployment was not on the tag with its replica available`);

      const commit = summarize(runs.map((r) => r.commitMs));
      const flux = { name: 'Flux poll interval (published)', summary: constant(FLUX_INTERVAL_MS, runs.length) };
      const argo = { name: 'Argo CD poll interval (published)', summary: constant(ARGO_CD_RECONCILIATION_MS, runs.length) };
      const metrics: MetricRow[] = [
        row('webhook→commit pushed', 'ms', commit, flux, { on: 'orrery', op: '<', value: 2_000 }),
        row('webhook→commit pushed', 'ms', commit, argo),
      ];
      if (kube) {
        const rollout = summarize(runs.map((r) => r.rolloutMs!));
        metrics.push(row('webhook→rolled out', 'ms', rollout, flux), row('webhook→rolled out', 'ms', rollout, argo));
      }
      metrics.push(row('webhook→202', 'ms', summarize(runs.map((r) => r.webhookMs))));
      return {
        metrics,
        settings: {
          runs: s.runs,
          gitServer: 'git http-backend (smart HTTP) on 127.0.0.1',
          cluster: kube ? `${kube.kc.getCurrentCluster()?.server} (namespace ${namespace}, one Deployment, 1 replica)` : 'none (plan mode)',
          deployLog: databaseUrl ? `Postgres (schema ${schema})` : 'memory',
          baselines: { fluxIntervalMs: FLUX_INTERVAL_MS, argoCdReconciliationMs: ARGO_CD_RECONCILIATION_MS },
          warmup: warm,
        },
        runs,
        notes,
      };
    } finally {
      await orrery?.stop();
      await server.close();
      await rm(server.root, { recursive: true, force: true });
      if (kube && namespace) await kube.kc.makeApiClient(CoreV1Api).deleteNamespace({ name: namespace }).catch(() => undefined);
      if (databaseUrl) {
        await dropSchema(databaseUrl, schema);
      }
    }
  },
};
