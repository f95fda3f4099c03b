import { createHmac } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gitCli, startGitServer } from '../helpers/git-server.ts';
import { uniqueName, waitFor } from '../helpers/index.ts';
import { startOrrery, type OrreryProcess } from '../helpers/process.ts';

/**
 * The security model of `orrery start gitops pilot` as a real process (the CLI, one admin
 * token for both components): no control endpoint answers without a credential, the git
 * push webhook wants a signature, and a refused registry webhook leaves a trace: one log
 * line per window, and a row in Pilot.
 */
const ADMIN_TOKEN = 'security-test-admin-token-0123';
const REGISTRY_TOKEN = 'security-test-registry-token';
const GIT_WEBHOOK_SECRET = 'security-test-git-webhook-secret';
const MANIFEST = (tag: string) => `apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: default }
spec:
  template:
    spec:
      containers:
        - name: web
          image: registry.example.com/team/web:${tag} # {"$imagepolicy": "web"}
`;

describe('security model: gitops and pilot', () => {
  let server: Awaited<ReturnType<typeof startGitServer>>;
  let orrery: OrreryProcess;
  let dir: string;
  const get = (path: string, token?: string) => fetch(`${orrery.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const distribution = (token: string, tag = '1.0.1') =>
    fetch(`${orrery.url}/webhooks/registry/distribution`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/vnd.docker.distribution.events.v2+json' },
      body: JSON.stringify({
        events: [{ id: uniqueName('ev'), action: 'push', target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'b'.repeat(64)}`, repository: 'team/web', tag }, request: { host: 'registry.example.com' } }],
      }),
    });
  const gitHook = (headers: Record<string, string>, body = JSON.stringify({ ref: 'refs/heads/main' })) =>
    fetch(`${orrery.url}/webhooks/git`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const sign = (body: string, secret = GIT_WEBHOOK_SECRET) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

  beforeAll(async () => {
    server = await startGitServer({ 'apps/web.yaml': MANIFEST('1.0.0') });
    dir = await mkdtemp(join(tmpdir(), 'orrery-security-'));
    await writeFile(
      join(dir, 'orrery.yaml'),
      `gitops:
  repo: { url: ${server.url}, token: \${GIT_TOKEN}, path: apps }
  receivers: { distribution: { token: \${REGISTRY_TOKEN} } }
  sync: { intervalMs: 600000, webhookSecret: \${GIT_WEBHOOK_SECRET} }
  policies:
    - { name: web, image: registry.example.com/team/web, tags: { semver: ">=1.0.0" } }
`,
    );
    orrery = await startOrrery(['start', 'gitops', 'pilot'], {
      ORRERY_CONFIG: join(dir, 'orrery.yaml'),
      ORRERY_DATA_DIR: join(dir, 'data'),
      GIT_TOKEN: server.token,
      REGISTRY_TOKEN,
      GIT_WEBHOOK_SECRET,
      PILOT_ADMIN_TOKEN: ADMIN_TOKEN,
      KAFKA_BROKERS: '',
      DATABASE_URL: '',
      REDIS_URL: '',
      KUBECONFIG: '',
    });
  }, 90_000);

  afterAll(async () => {
    await orrery?.stop();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('every control endpoint refuses a request without the admin token, or with a wrong one, and takes the right one', async () => {
    const res = await distribution(REGISTRY_TOKEN);
    expect(res.status).toBe(202);
    const [id] = ((await res.json()) as { deploys: number[] }).deploys;
    for (const path of ['/sync/status', '/deploys', `/deploys/${id}`, '/api/config', '/api/deploys', '/api/webhooks/refusals']) {
      const none = await get(path);
      expect(none.status, `${path} without a token`).toBe(401);
      expect(none.headers.get('www-authenticate'), path).toMatch(/^Bearer /);
      expect(await none.json(), path).toMatchObject({ success: false, code: 'missing_token' });
      const wrong = await get(path, 'not-the-admin-token');
      expect(wrong.status, `${path} with a wrong token`).toBe(401);
      expect(await wrong.json(), path).toMatchObject({ code: 'invalid_token' });
      expect((await get(path, ADMIN_TOKEN)).status, `${path} with the token`).toBe(200);
    }
    // What was refused without the token: the inventory and the deploy history.
    expect(await (await get(`/deploys/${id}`, ADMIN_TOKEN)).json()).toMatchObject({ id, policy: 'web' });
    // Health, readiness and metrics stay open, for probes and scrapers.
    for (const path of ['/healthz', '/readyz', '/metrics']) expect((await get(path)).status, path).not.toBe(401);
  });

  it('the git webhook refuses a missing or bad signature, and a signed push makes the sync take the new commit', async () => {
    const body = JSON.stringify({ ref: 'refs/heads/main', after: 'x' });
    const missing = await gitHook({}, body);
    expect(missing.status).toBe(401);
    expect(await missing.json()).toMatchObject({ success: false, code: 'missing_signature' });
    expect((await gitHook({ 'x-hub-signature-256': sign(body, 'a-different-secret-0000') }, body)).status).toBe(401);
    expect((await gitHook({ 'x-hub-signature-256': sign(body) }, `${body}\n`)).status).toBe(401);
    expect((await gitHook({ 'x-gitlab-token': 'not-the-secret' }, body)).status).toBe(401);

    // The deploy of the test before commits on its own time: let it land first, or its push
    // races ours and is re-applied on top, and the sync it triggers would bring our commit in.
    await waitFor(async () => ((await (await get('/deploys', ADMIN_TOKEN)).json()) as { deploys: Array<{ state: string }> }).deploys.every((d) => d.state !== 'received'), {
      what: 'earlier deploys committed',
    });
    // A commit the sync has not seen (its interval is ten minutes: only a hook brings it in).
    const work = await server.clone();
    await writeFile(join(work, 'apps/config.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: web-config, namespace: default }\ndata: { pushed: "yes" }\n');
    await gitCli(work, 'add', '-A');
    await gitCli(work, 'commit', '-qm', 'add a config map');
    await gitCli(work, 'push', '--quiet', 'origin', 'main');
    const head = (await gitCli(work, 'rev-parse', 'HEAD')).trim();
    await rm(work, { recursive: true, force: true });

    const signed = await gitHook({ 'x-hub-signature-256': sign(body), 'x-github-event': 'push' }, body);
    expect(signed.status).toBe(202);
    await waitFor(async () => ((await (await get('/sync/status', ADMIN_TOKEN)).json()) as { revision: string | null }).revision === head, {
      timeoutMs: 30_000,
      what: `the sync at ${head.slice(0, 12)}`,
    });
    // GitLab's token, and the admin token, are taken too.
    expect((await gitHook({ 'x-gitlab-token': GIT_WEBHOOK_SECRET }, body)).status).toBe(202);
    expect((await gitHook({ authorization: `Bearer ${ADMIN_TOKEN}` }, body)).status).toBe(202);
  });

  it('a registry sending the wrong token is logged once per window, and shown in Pilot with how often', async () => {
    for (let i = 0; i < 3; i++) expect((await distribution('a-stale-registry-token')).status).toBe(401);
    const { refusals, windowMs } = (await (await get('/api/webhooks/refusals', ADMIN_TOKEN)).json()) as {
      windowMs: number;
      refusals: Array<{ receiver: string; reason: string; status: number; count: number; lastAt: number }>;
    };
    expect(windowMs).toBe(60_000);
    expect(refusals.find((r) => r.receiver === 'registry/distribution')).toMatchObject({ reason: 'bad_token', status: 401, count: 3 });
    expect(refusals.find((r) => r.receiver === 'git' && r.reason === 'bad_signature')).toMatchObject({ status: 401, count: 2 });
    const lines = await waitFor(() => {
      const found = orrery.logs.filter((l) => l.component === 'webhooks' && l.receiver === 'registry/distribution');
      return found.length > 0 ? found : undefined;
    });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', reason: 'bad_token', status: 401 });
    expect(JSON.stringify(orrery.logs)).not.toContain('a-stale-registry-token');
  });
});
