import { createHmac, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import git from 'isomorphic-git';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/index.ts';
import { startOrrery, type OrreryProcess } from '../helpers/process.ts';

/**
 * GitOps on the embedded default, as a new user meets it: `orrery start` with none of the
 * real services and no gitops section. The first start creates a local manifests
 * repository (Orrery's example environment) and a webhook secret, printed once on stderr.
 * A signed generic webhook for the ml team's Airflow image makes a real commit there, and
 * its deploy ends planned (no cluster) in Pilot's deploy history.
 */
const SERVICES = ['KAFKA_BROKERS', 'DATABASE_URL', 'REDIS_URL', 'KUBECONFIG', 'ORRERY_CONFIG', 'DATABASE_SCHEMA'];
const TOKEN = 'gitops-embedded-admin-token-0123456789';
const ENV = 'manifests/environments/dev';
const IMAGE = 'registry.dev.example.com/ml/airflow';

/** A Standard Webhooks signature, as any sender computes it. */
function signed(secret: string, body: string) {
  const id = `push-${randomUUID()}`;
  const ts = String(Math.floor(Date.now() / 1000));
  const sig = createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64')).update(`${id}.${ts}.${body}`).digest('base64');
  return { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': ts, 'webhook-signature': `v1,${sig}` };
}

interface DeployView {
  id: number;
  state: string;
  sha: string | null;
  policy: string;
  history: Array<{ state: string; detail?: string }>;
}

describe('gitops on the embedded default', () => {
  const procs: OrreryProcess[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.stop()));
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });

  it('a signed generic webhook commits to the local manifests repository, and the deploy ends planned in Pilot', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orrery-gitops-embedded-'));
    dirs.push(dir);
    const data = join(dir, 'data');
    const repo = join(data, 'manifests');
    const env = { ORRERY_DATA_DIR: data, PILOT_ADMIN_TOKEN: TOKEN };

    const first = await startOrrery(['start'], env, { without: SERVICES });
    procs.push(first);
    const secret = await waitFor(() => /signing secret: (whsec_\S+)/.exec(first.stderr())?.[1], { timeoutMs: 30_000, what: 'the webhook secret on stderr' });
    expect(first.stderr()).toContain(`POST ${first.url}/webhooks/registry/generic`);
    // Kept 0600 beside the data; never in the log.
    const secretFile = join(data, 'gitops-webhook-secret');
    expect((await readFile(secretFile, 'utf8')).trim()).toBe(secret);
    expect((await stat(secretFile)).mode & 0o777).toBe(0o600);
    expect(JSON.stringify(first.logs)).not.toContain(secret);
    const messages = first.logs.map((l) => String(l.msg));
    expect(messages).toContain(`gitops: manifests repo: local git repository at ${repo} (default; set gitops.repo.url), created with Orrery's example environment ${ENV}`);
    expect(messages).toContain('gitops: sync in plan mode (default: nothing is applied to a cluster; KUBECONFIG applies with a gitops section only)');

    // The starter commit: the example environment as committed in Orrery.
    const [starter] = await git.log({ fs, dir: repo, ref: 'main' });
    const seeded = Buffer.from((await git.readBlob({ fs, dir: repo, oid: starter!.oid, filepath: `${ENV}/values.yaml` })).blob).toString('utf8');
    expect(seeded).toBe(await readFile(new URL(`../../${ENV}/values.yaml`, import.meta.url), 'utf8'));
    expect(seeded).toContain('tag: 1.4.0 # {"$imagepolicy": "ml-airflow:tag"}');

    // A push of a new ml Airflow image, signed with the printed secret.
    const body = JSON.stringify({ image: IMAGE, tag: '1.5.0' });
    const res = await fetch(`${first.url}/webhooks/registry/generic`, { method: 'POST', headers: signed(secret, body), body });
    expect(res.status).toBe(202);
    const [id] = ((await res.json()) as { deploys: number[] }).deploys;
    // A wrong secret is refused.
    const forged = await fetch(`${first.url}/webhooks/registry/generic`, { method: 'POST', headers: signed(`whsec_${Buffer.from('not-the-secret-at-all').toString('base64')}`, body), body });
    expect(forged.status).toBe(401);

    // Pilot's deploy history: committed, then planned by the sync (no cluster).
    const pilot = (path: string) => fetch(`${first.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const deploy = await waitFor(
      async () => {
        const { deploys } = (await (await pilot('/api/deploys')).json()) as { deploys: DeployView[] };
        const d = deploys.find((x) => x.id === id);
        return d && ['planned', 'failed', 'skipped'].includes(d.state) ? d : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200, what: `deploy #${id} planned` },
    );
    expect(deploy, JSON.stringify(deploy)).toMatchObject({ state: 'planned', policy: 'ml-airflow' });
    expect(deploy.history.map((h) => h.state)).toEqual(['received', 'committed', 'planned']);
    expect(deploy.history.at(-1)!.detail).toMatch(/nothing applied \(no cluster\): this commit changes 5 objects \(airflow-ml_api-server_apps_Deployment, .*airflow-ml_worker_apps_StatefulSet\)/);
    const policies = (await (await pilot('/api/image-policies')).json()) as { policies: Array<{ name: string }> };
    expect(policies.policies.map((p) => p.name)).toContain('ml-airflow');

    // The commit in the local repository: ml's marked tag and ml's images, nothing else.
    const [head] = await git.log({ fs, dir: repo, ref: 'main', depth: 1 });
    expect(head!.oid).toBe(deploy.sha);
    expect(head!.commit.message.trim()).toBe(`deploy(ml-airflow): ${IMAGE}:1.5.0`);
    expect(head!.commit.parent).toEqual([starter!.oid]);
    const read = async (oid: string, filepath: string) => Buffer.from((await git.readBlob({ fs, dir: repo, oid, filepath })).blob).toString('utf8');
    expect(await read(head!.oid, `${ENV}/values.yaml`)).toBe(seeded.replace('tag: 1.4.0 # {"$imagepolicy": "ml-airflow:tag"}', 'tag: 1.5.0 # {"$imagepolicy": "ml-airflow:tag"}'));
    const changed = (await git.walk({
      fs,
      dir: repo,
      trees: [git.TREE({ ref: starter!.oid }), git.TREE({ ref: head!.oid })],
      map: async (file, [a, b]) => ((await a?.type()) === 'blob' && (await a?.oid()) !== (await b?.oid()) ? file : undefined),
    })) as string[];
    expect(changed.filter(Boolean).sort()).toEqual([
      `${ENV}/rendered/airflow-ml/api-server.yaml`,
      `${ENV}/rendered/airflow-ml/dag-processor.yaml`,
      `${ENV}/rendered/airflow-ml/flower.yaml`,
      `${ENV}/rendered/airflow-ml/scheduler.yaml`,
      `${ENV}/rendered/airflow-ml/worker.yaml`,
      `${ENV}/values.yaml`,
    ]);
    expect(await read(head!.oid, `${ENV}/rendered/airflow-ml/worker.yaml`)).toContain(`image: ${IMAGE}:1.5.0 # {"$imagepolicy": "ml-airflow"}`);
    expect(await read(head!.oid, `${ENV}/rendered/airflow-ml/worker.yaml`)).not.toContain(`${IMAGE}:1.4.0`);

    // A restart keeps the repository and the secret: nothing is created again or printed again.
    expect(await first.stop()).toBe(0);
    const second = await startOrrery(['start'], env, { without: SERVICES, port: first.port });
    procs.push(second);
    await waitFor(() => second.stderr().includes('GitOps runs on its embedded default'), { what: 'the short gitops line on stderr' });
    expect(second.stderr()).not.toContain(secret);
    expect(second.stderr()).toContain(`signed with the secret in ${secretFile}`);
    expect(second.logs.map((l) => String(l.msg))).toContain(`gitops: manifests repo: local git repository at ${repo} (default; set gitops.repo.url)`);
    expect((await git.log({ fs, dir: repo, ref: 'main' })).map((c) => c.oid)).toEqual([head!.oid, starter!.oid]);
  });

  it('gitops: { enabled: false } turns it off: no repository, no webhooks', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orrery-gitops-off-'));
    dirs.push(dir);
    await writeFile(join(dir, 'orrery.yaml'), 'gitops: { enabled: false }\n');
    const orrery = await startOrrery(['start', 'gitops'], { ORRERY_CONFIG: join(dir, 'orrery.yaml'), ORRERY_DATA_DIR: join(dir, 'data') }, { without: SERVICES.filter((s) => s !== 'ORRERY_CONFIG') });
    procs.push(orrery);
    // /healthz answers once the server listens; the components load after it (lazily), so wait for the line.
    await waitFor(() => orrery.logs.some((l) => l.msg === 'gitops: off (gitops.enabled: false): registry webhooks are off'), { what: "the 'gitops: off' log line" });
    const res = await fetch(`${orrery.url}/webhooks/registry/generic`, { method: 'POST', headers: signed(`whsec_${Buffer.from('any-secret-0123456789').toString('base64')}`, '{}'), body: '{}' });
    expect(res.status).toBe(404);
    await expect(stat(join(dir, 'data', 'manifests'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(orrery.stderr()).not.toContain('embedded default');
  });
});
