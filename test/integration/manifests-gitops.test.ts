import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify } from 'yaml';
import { kubernetesFiles, renderKubernetes } from '../../manifests/render/kubernetes.ts';
import { loadValues } from '../../manifests/values.ts';
import { gitCli, startGitServer } from '../helpers/git-server.ts';
import { serviceEnv, uniqueName, waitFor } from '../helpers/index.ts';
import { startOrrery, type OrreryProcess } from '../helpers/process.ts';

/**
 * The dev environment as the GitOps controller meets it: the repository holds
 * manifests/environments/dev (values.yaml, rendered/, bootstrap/) exactly as committed
 * here, and `orrery start gitops` runs with the config the render itself generates (the
 * orrery-config ConfigMap, with its image policies), pointed at a real git server.
 *
 * A registry push of `<registry>/ml/airflow` must move the ml tag in values.yaml and the
 * ml images in rendered/, nothing of the other team, and leave the repository in the state
 * a re-render of the new values gives: values and render still agree.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENV = 'manifests/environments/dev';
const REGISTRY_TOKEN = 'registry-token-dev';
/** /deploys wants the admin token. */
const ADMIN_TOKEN = 'devenv-admin-token-0123456';

async function filesUnder(root: string, dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(join(root, dir), { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const path = relative(root, join(e.parentPath, e.name));
    out[path] = await readFile(join(root, path), 'utf8');
  }
  return out;
}

function pushEvent(repository: string, tag: string) {
  return JSON.stringify({
    events: [
      {
        id: uniqueName('ev'),
        timestamp: new Date().toISOString(),
        action: 'push',
        target: {
          mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
          digest: `sha256:${createHash('sha256').update(repository + tag).digest('hex')}`,
          repository,
          tag,
        },
        request: { id: 'r1', host: 'registry.dev.example.com', method: 'PUT', useragent: 'docker/27' },
      },
    ],
  });
}

describe('the dev environment follows image pushes: values file and render together', () => {
  let server: Awaited<ReturnType<typeof startGitServer>>;
  let orrery: OrreryProcess;
  let seed: Record<string, string>;

  const push = (repository: string, tag: string) =>
    fetch(`${orrery.url}/webhooks/registry/distribution`, {
      method: 'POST',
      headers: { authorization: `Bearer ${REGISTRY_TOKEN}`, 'content-type': 'application/vnd.docker.distribution.events.v2+json' },
      body: pushEvent(repository, tag),
    });

  /** Posts a push and waits for its deploy to settle; returns the deploy. */
  async function deploy(repository: string, tag: string) {
    const res = await push(repository, tag);
    expect(res.status).toBe(202);
    const [id] = ((await res.json()) as { deploys: number[] }).deploys;
    return waitFor(
      async () => {
        const d = (await (await fetch(`${orrery.url}/deploys/${id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { state: string; error: string | null; history: unknown[] };
        return ['planned', 'skipped', 'failed'].includes(d.state) ? d : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100, what: `the deploy of ${repository}:${tag}` },
    );
  }

  beforeAll(async () => {
    seed = await filesUnder(ROOT, ENV);
    server = await startGitServer(seed);
    const dir = await mkdtemp(join(tmpdir(), 'orrery-dev-env-'));
    // The gitops section Orrery runs with in the dev environment (its policies, receivers
    // and repository path), from the committed render; only the repository URL differs.
    // (The rest, Kafka's in-cluster address, is for the other services.)
    const configMap = parseYaml(seed[`${ENV}/rendered/orrery/config.yaml`]!.replace(/^---\n/, '')) as { data: Record<string, string> };
    const { gitops } = parseYaml(configMap.data['orrery.yaml']!) as { gitops: { repo: Record<string, unknown> } };
    gitops.repo.url = server.url;
    await writeFile(join(dir, 'orrery.yaml'), stringify({ gitops }));
    orrery = await startOrrery(['start', 'gitops'], {
      ORRERY_CONFIG: join(dir, 'orrery.yaml'),
      ORRERY_DATA_DIR: join(dir, 'data'),
      GIT_TOKEN: server.token,
      REGISTRY_TOKEN,
      PILOT_ADMIN_TOKEN: ADMIN_TOKEN,
      DATABASE_URL: serviceEnv('DATABASE_URL'),
      DATABASE_SCHEMA: uniqueName('devenv').toLowerCase(),
      KAFKA_BROKERS: '',
      REDIS_URL: '',
      // Plan mode: this file is about the commit, not the cluster.
      KUBECONFIG: '',
    });
  });

  afterAll(async () => {
    await orrery?.stop();
    await server?.close();
  });

  it("a push of ml's Airflow image moves ml's tag in values.yaml and ml's images in rendered/, nothing else, and a re-render agrees", async () => {
    const d = await deploy('ml/airflow', '1.5.0');
    expect(d, JSON.stringify(d)).toMatchObject({ state: 'planned' });
    const clone = await server.clone();
    const after = await filesUnder(clone, ENV);

    // values.yaml: exactly ml's tag line changed, marker kept.
    const values = `${ENV}/values.yaml`;
    expect(after[values]).toBe(
      seed[values]!.replace('tag: 1.4.0 # {"$imagepolicy": "ml-airflow:tag"}', 'tag: 1.5.0 # {"$imagepolicy": "ml-airflow:tag"}'),
    );
    expect(after[values]).not.toBe(seed[values]);

    // rendered/: only files of ml's namespace changed, only image lines in them.
    const changed = Object.keys(seed).filter((f) => after[f] !== seed[f]);
    expect(changed.filter((f) => f !== values).every((f) => f.startsWith(`${ENV}/rendered/airflow-ml/`)), changed.join(', ')).toBe(true);
    expect(Object.keys(after).sort()).toEqual(Object.keys(seed).sort());
    const diff = await gitCli(clone, 'diff', '-U0', 'HEAD~1', 'HEAD');
    const lines = diff.split('\n').filter((l) => /^[-+](?![-+])/.test(l));
    expect(lines.filter((l) => !/image: registry\.dev\.example\.com\/ml\/airflow:1\.[45]\.0 # \{"\$imagepolicy": "ml-airflow"\}$|tag: 1\.[45]\.0 # /.test(l)), diff).toEqual([]);

    // The repository is what rendering its new values gives, byte for byte.
    const rerendered = kubernetesFiles(renderKubernetes(loadValues(join(clone, values))));
    const inRepo = Object.entries(after).filter(([f]) => f.startsWith(`${ENV}/rendered/`) || f.startsWith(`${ENV}/bootstrap/`));
    expect(inRepo.length).toBe(rerendered.size);
    for (const [f, text] of inRepo) {
      const path = f.slice(`${ENV}/`.length).replace(/^rendered\//, '');
      expect(text, f).toBe(rerendered.get(path));
    }
    // In that render, the new image is in ml's Deployments and StatefulSet, and only there.
    const withNew = [...rerendered].filter(([, t]) => t.includes('ml/airflow:1.5.0')).map(([p]) => p);
    expect(withNew.length).toBeGreaterThan(0);
    expect(withNew.every((p) => p.startsWith('airflow-ml/'))).toBe(true);
    const kinds = new Set(
      [...rerendered.values()].flatMap((t) => t.split('\n---\n').filter((doc) => doc.includes('ml/airflow:1.5.0')).map((doc) => /^kind: (\w+)$/m.exec(doc)?.[1])),
    );
    expect([...kinds].sort()).toEqual(['Deployment', 'StatefulSet']);
    expect([...rerendered.values()].join('').includes('ml/airflow:1.4.0')).toBe(false);
  });

  it("web-analytics' own push then moves only web-analytics, on top of ml's change", async () => {
    const before = await filesUnder(await server.clone(), ENV);
    const d = await deploy('web-analytics/airflow', '3.1.0-dags.43');
    expect(d, JSON.stringify(d)).toMatchObject({ state: 'planned' });
    const after = await filesUnder(await server.clone(), ENV);
    const changed = Object.keys(before).filter((f) => after[f] !== before[f]);
    expect(changed).toContain(`${ENV}/values.yaml`);
    expect(changed.filter((f) => f !== `${ENV}/values.yaml`).every((f) => f.startsWith(`${ENV}/rendered/airflow-web-analytics/`)), changed.join(', ')).toBe(true);
    const values = loadValues(join(await server.clone(), `${ENV}/values.yaml`));
    expect(values.deployments.map((x) => [x.name, x.image.tag])).toEqual([
      ['web-analytics', '3.1.0-dags.43'],
      ['ml', '1.5.0'],
    ]);
  });
});
