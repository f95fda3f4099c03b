import { createHash, createHmac } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gitCli, startGitServer } from '../helpers/git-server.ts';
import { serviceEnv, uniqueName, waitFor } from '../helpers/index.ts';
import { startOrrery, type OrreryProcess } from '../helpers/process.ts';

/**
 * `orrery start gitops` against a real git smart-HTTP server and real Postgres: registry
 * webhooks become commits; malicious deliveries change nothing.
 */
const WORKLOADS = 20;
const manifest = (i: number) => `# workload ${i}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: w${i}
spec:
  template:
    spec:
      containers:
        - name: main
          image: registry.example.com/team/w${i}:1.0.0 # {"$imagepolicy": "w${i}"}
`;

const REGISTRY_TOKEN = 'registry-token-abc';
const ADMIN_TOKEN = 'gitops-admin-token-abc-0123';
/** /deploys and /sync/status want the admin token. */
const admin = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
const GHCR_SECRET = 'ghcr-secret-xyz-0123';
const GENERIC_SECRET = `whsec_${Buffer.from('generic-secret-0123456789').toString('base64')}`;

function distributionEvent(repo: string, tag: string, id = uniqueName('ev')) {
  return JSON.stringify({
    events: [
      {
        id,
        timestamp: new Date().toISOString(),
        action: 'push',
        target: {
          mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
          digest: `sha256:${createHash('sha256').update(repo + tag).digest('hex')}`,
          repository: repo,
          tag,
          url: `https://registry.example.com/v2/${repo}/manifests/sha256:x`,
        },
        request: { id: 'r1', host: 'registry.example.com', method: 'PUT', useragent: 'docker/27' },
        actor: {},
        source: { addr: 'registry:5000' },
      },
    ],
  });
}

describe('gitops: registry webhooks to commits', () => {
  let server: Awaited<ReturnType<typeof startGitServer>>;
  let orrery: OrreryProcess;
  const post = (path: string, body: string, headers: Record<string, string>) =>
    fetch(`${orrery.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const distribution = (body: string, token = REGISTRY_TOKEN) =>
    post('/webhooks/registry/distribution', body, { authorization: `Bearer ${token}`, 'content-type': 'application/vnd.docker.distribution.events.v2+json' });

  beforeAll(async () => {
    const seed: Record<string, string> = { 'README.md': '# manifests\n' };
    for (let i = 0; i < WORKLOADS; i++) seed[`apps/w${i}.yaml`] = manifest(i);
    server = await startGitServer(seed);
    const dir = await mkdtemp(join(tmpdir(), 'orrery-gitops-'));
    const policies = Array.from({ length: WORKLOADS }, (_, i) => `    - { name: w${i}, image: registry.example.com/team/w${i}, tags: { semver: ">=1.0.0" }, mode: commit }`).join('\n');
    await writeFile(
      join(dir, 'orrery.yaml'),
      `gitops:
  repo:
    url: ${server.url}
    branch: main
    token: \${GIT_TOKEN}
    path: apps
    author: { name: Orrery Bot, email: bot@orrery.test }
  receivers:
    distribution: { token: \${REGISTRY_TOKEN} }
    ghcr: { secret: \${GHCR_SECRET} }
    generic: { secret: \${GENERIC_SECRET} }
  policies:
${policies}
`,
    );
    orrery = await startOrrery(['start', 'gitops'], {
      ORRERY_CONFIG: join(dir, 'orrery.yaml'),
      ORRERY_DATA_DIR: join(dir, 'data'),
      GIT_TOKEN: server.token,
      REGISTRY_TOKEN,
      GHCR_SECRET,
      GENERIC_SECRET,
      PILOT_ADMIN_TOKEN: ADMIN_TOKEN,
      DATABASE_URL: serviceEnv('DATABASE_URL'),
      DATABASE_SCHEMA: uniqueName('gitops').toLowerCase(),
      KAFKA_BROKERS: '',
      REDIS_URL: '',
      // No cluster: this file checks plan mode (test/all exports the test cluster's KUBECONFIG).
      KUBECONFIG: '',
    });
  });
  afterAll(async () => {
    await orrery?.stop();
    await server?.close();
  });

  it(`${WORKLOADS} concurrent webhooks for different workloads leave ${WORKLOADS} updates, none lost`, async () => {
    const responses = await Promise.all(Array.from({ length: WORKLOADS }, (_, i) => distribution(distributionEvent(`team/w${i}`, '1.1.0'))));
    expect(responses.map((r) => r.status)).toEqual(Array(WORKLOADS).fill(202));
    const ids = ((await Promise.all(responses.map((r) => r.json()))) as Array<{ deploys: number[] }>).flatMap((b) => b.deploys);
    expect(ids).toHaveLength(WORKLOADS);
    await waitFor(
      async () => {
        const { deploys } = (await (await fetch(`${orrery.url}/deploys?limit=100`, admin)).json()) as { deploys: Array<{ state: string }> };
        // Plan mode: each commit's deploy ends at planned once the sync has taken it.
        return deploys.filter((d) => d.state === 'planned').length === WORKLOADS;
      },
      { timeoutMs: 60_000, intervalMs: 200, what: 'all deploys committed and planned' },
    );
    const check = await server.clone();
    for (let i = 0; i < WORKLOADS; i++) {
      const text = await readFile(join(check, `apps/w${i}.yaml`), 'utf8');
      expect(text).toBe(manifest(i).replace(`w${i}:1.0.0`, `w${i}:1.1.0`));
    }
    const subjects = (await gitCli(check, 'log', '--format=%s|%an')).trim().split('\n');
    expect(subjects).toHaveLength(WORKLOADS + 1);
    expect(subjects.filter((s) => s.endsWith('|Orrery Bot'))).toHaveLength(WORKLOADS);
    expect(subjects[0]).toMatch(/^deploy\(w\d+\): registry\.example\.com\/team\/w\d+:1\.1\.0\|Orrery Bot$/);

    const one = (await (await fetch(`${orrery.url}/deploys/${ids[0]}`, admin)).json()) as { state: string; sha: string; history: Array<{ state: string; detail?: string }> };
    expect(one.state).toBe('planned');
    expect(one.sha).toMatch(/^[0-9a-f]{40}$/);
    expect(one.history.map((h) => h.state)).toEqual(['received', 'committed', 'planned']);
    // The plan names the object this deploy's commit changes.
    expect(one.history.at(-1)?.detail).toMatch(/^plan at [0-9a-f]{12}, nothing applied \(no cluster\): this commit changes 1 object \(\S*Deployment\S*\)/);
  });

  it('a replayed delivery is answered 200 and does nothing; an older tag is skipped', async () => {
    const body = distributionEvent('team/w0', '1.2.0', 'fixed-delivery-id');
    expect((await distribution(body)).status).toBe(202);
    const again = await distribution(body);
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ deploys: [], duplicates: 1 });
    const older = await distribution(distributionEvent('team/w1', '1.0.5'));
    const olderId = ((await older.json()) as { deploys: number[] }).deploys[0];
    await waitFor(async () => ((await (await fetch(`${orrery.url}/deploys/${olderId}`, admin)).json()) as { state: string }).state === 'skipped', {
      what: 'the older tag skipped',
    });
  });

  it('malicious deliveries are answered 4xx and change nothing', async () => {
    const check = await server.clone();
    const head = (await gitCli(check, 'rev-parse', 'HEAD')).trim();
    const count = async () => ((await (await fetch(`${orrery.url}/deploys?limit=500`, admin)).json()) as { deploys: unknown[] }).deploys.length;
    const before = await count();
    const now = Math.floor(Date.now() / 1000);
    const generic = (body: string, ts = now, secret = GENERIC_SECRET) => {
      const key = Buffer.from(secret.slice(6), 'base64');
      const sig = createHmac('sha256', key).update(`msg-1.${ts}.${body}`).digest('base64');
      return post('/webhooks/registry/generic', body, { 'webhook-id': 'msg-1', 'webhook-timestamp': String(ts), 'webhook-signature': `v1,${sig}` });
    };
    const cases: Array<[string, Promise<Response>]> = [
      ['path traversal in the repository', distribution(distributionEvent('../../etc/passwd', '1.3.0'))],
      ['YAML in a tag', distribution(distributionEvent('team/w2', '1.3.0\n  evil: true'))],
      ['a comment in a tag', distribution(distributionEvent('team/w2', '1.3.0 # {"$imagepolicy": "w3"}'))],
      ['a wrong registry token', distribution(distributionEvent('team/w2', '1.3.0'), 'wrong')],
      ['an oversized body', distribution('x'.repeat(2 * 1024 * 1024))],
      ['invalid JSON', distribution('{"events": [')],
      ['a wrong GHCR signature', post('/webhooks/registry/ghcr', '{"action":"published"}', { 'x-github-event': 'package', 'x-hub-signature-256': 'sha256=00' })],
      ['an old generic timestamp', generic(JSON.stringify({ image: 'registry.example.com/team/w2', tag: '1.3.0' }), now - 3600)],
      ['a generic signature with the wrong secret', generic(JSON.stringify({ image: 'registry.example.com/team/w2', tag: '1.3.0' }), now, `whsec_${Buffer.from('other-secret-000000000').toString('base64')}`)],
      ['an unknown provider', post('/webhooks/registry/nexus', '{}', {})],
    ];
    for (const [what, pending] of cases) {
      const res = await pending;
      expect(res.status, what).toBeGreaterThanOrEqual(400);
      expect(res.status, what).toBeLessThan(500);
      expect(((await res.json()) as { code: string }).code, what).toMatch(/^[a-z_]+$/);
    }
    // Refused before anything was recorded, so nothing can be committed later either.
    expect(await count()).toBe(before);
    const after = await server.clone();
    expect((await gitCli(after, 'rev-parse', 'HEAD')).trim()).toBe(head);
  });

  it('without a cluster, the sync runs in plan mode and records the plan for the head revision', async () => {
    const head = (await gitCli(await server.clone(), 'rev-parse', 'HEAD')).trim();
    const status = await waitFor(
      async () => {
        const s = (await (await fetch(`${orrery.url}/sync/status`, admin)).json()) as { mode: string; revision: string; plan: { apply: string[] }; conditions: Array<{ type: string; reason: string }> };
        return s.revision === head ? s : undefined;
      },
      { what: 'a plan for the head revision' },
    );
    expect(status.mode).toBe('plan');
    expect(status.plan.apply).toHaveLength(WORKLOADS);
    expect(status.plan.apply).toContain('_w0_apps_Deployment');
    expect(status.conditions[0]).toMatchObject({ type: 'Ready', reason: 'Planned' });
  });

  it('a valid generic webhook, signed Standard Webhooks style, deploys', async () => {
    const body = JSON.stringify({ image: 'registry.example.com/team/w5', tag: '1.4.0' });
    const ts = Math.floor(Date.now() / 1000);
    const key = Buffer.from(GENERIC_SECRET.slice(6), 'base64');
    const sig = createHmac('sha256', key).update(`gen-7.${ts}.${body}`).digest('base64');
    const res = await post('/webhooks/registry/generic', body, { 'webhook-id': 'gen-7', 'webhook-timestamp': String(ts), 'webhook-signature': `v1,${sig}` });
    expect(res.status).toBe(202);
    await waitFor(async () => (await readFile(join(await server.clone(), 'apps/w5.yaml'), 'utf8')).includes('w5:1.4.0'), { what: 'w5 at 1.4.0' });
  });
});
