import { http, HttpResponse } from 'msw';
import { setupServer } from 'msw/node';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImagePolicy } from '../../core/gitops-config.ts';
import { createDeployer } from '../../gitops/controller/deployer.ts';
import { createSqliteStore } from '../../core/store/sqlite.ts';
import { createPgDeployLog } from '../../gitops/deploys.ts';
import { openManifestRepo } from '../../gitops/source/git.ts';
import { gitCli, startGitServer } from '../helpers/git-server.ts';
import { testLogger } from '../helpers/index.ts';

/**
 * Pull-request mode: the branch goes to a real git server; the pull request goes to
 * GitHub's REST API, which is out of reach, so msw stands in for GitHub only and checks the
 * request GitHub documents.
 */
const github = setupServer();
const requests: Array<{ url: string; auth: string | null; version: string | null; body: unknown }> = [];

describe('gitops pull-request mode', () => {
  let server: Awaited<ReturnType<typeof startGitServer>>;
  beforeAll(async () => {
    // Only api.github.com is mocked; the git server on loopback is real.
    github.listen({ onUnhandledRequest: 'bypass' } as never);
    server = await startGitServer({ 'apps/airflow.yaml': 'image: registry.example.com/data/airflow:1.0.0 # {"$imagepolicy": "airflow"}\n' });
  });
  afterAll(async () => {
    github.close();
    await server.close();
  });

  it('pushes a branch and opens a pull request; a retry finds the existing one', async () => {
    let calls = 0;
    github.use(
      http.post('https://api.github.com/repos/acme/manifests/pulls', async ({ request }) => {
        requests.push({ url: request.url, auth: request.headers.get('authorization'), version: request.headers.get('x-github-api-version'), body: await request.json() });
        calls++;
        return calls === 1
          ? HttpResponse.json({ number: 7, html_url: 'https://github.com/acme/manifests/pull/7' }, { status: 201 })
          : HttpResponse.json({ message: 'Validation Failed', errors: [{ message: 'A pull request already exists' }] }, { status: 422 });
      }),
      http.get('https://api.github.com/repos/acme/manifests/pulls', ({ request }) => {
        const q = new URL(request.url).searchParams;
        return HttpResponse.json(q.get('head') === 'acme:orrery/airflow-1.1.0' ? [{ number: 7, html_url: 'https://github.com/acme/manifests/pull/7' }] : []);
      }),
    );
    const repo = await openManifestRepo({
      url: server.url,
      branch: 'main',
      token: server.token,
      path: 'apps',
      author: { name: 'Orrery Bot', email: 'bot@orrery.test' },
      workdir: await mkdtemp(join(tmpdir(), 'orrery-wd-')),
      logger: testLogger(),
    });
    const deploys = await createPgDeployLog(createSqliteStore({ file: ':memory:', logger: testLogger() }));
    const deployer = createDeployer({
      repo,
      deploys,
      commitMessage: 'deploy({{policy}}): {{image}}:{{tag}}',
      logger: testLogger(),
      github: { apiUrl: 'https://api.github.com', owner: 'acme', repo: 'manifests', token: 'ghp_test' },
      baseBranch: 'main',
    });
    const policy = ImagePolicy.parse({ name: 'airflow', image: 'registry.example.com/data/airflow', tags: { semver: '>=1.0.0' }, mode: 'pull-request' });
    const push = { repository: 'registry.example.com/data/airflow', tag: '1.1.0' };
    const first = await deploys.record({ provider: 'generic', deliveryId: 'd1', policy: 'airflow', push });
    deployer.submit(first.deploy, policy, push);
    await deployer.idle();
    const d = await deploys.get(first.deploy.id);
    expect(d).toMatchObject({ state: 'pr-opened', branch: 'orrery/airflow-1.1.0', prUrl: 'https://github.com/acme/manifests/pull/7' });
    expect(requests[0]).toEqual({
      url: 'https://api.github.com/repos/acme/manifests/pulls',
      auth: 'Bearer ghp_test',
      version: '2022-11-28',
      body: { head: 'orrery/airflow-1.1.0', base: 'main', title: 'deploy(airflow): registry.example.com/data/airflow:1.1.0', body: expect.stringContaining('registry.example.com/data/airflow:1.1.0') },
    });
    const check = await server.clone();
    expect((await gitCli(check, 'show', 'origin/orrery/airflow-1.1.0:apps/airflow.yaml')).trim()).toBe(
      'image: registry.example.com/data/airflow:1.1.0 # {"$imagepolicy": "airflow"}',
    );
    expect((await gitCli(check, 'show', 'origin/main:apps/airflow.yaml')).trim()).toContain('airflow:1.0.0');

    const second = await deploys.record({ provider: 'generic', deliveryId: 'd2', policy: 'airflow', push });
    deployer.submit(second.deploy, policy, push);
    await deployer.idle();
    expect(await deploys.get(second.deploy.id)).toMatchObject({ state: 'pr-opened', prUrl: 'https://github.com/acme/manifests/pull/7' });
  });
});
