import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applySetters } from '../../gitops/update/setters.ts';
import { openManifestRepo } from '../../gitops/source/git.ts';
import { gitCli, startGitServer } from '../helpers/git-server.ts';
import { testLogger } from '../helpers/index.ts';

const DEPLOY = (policy: string, tag: string) => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${policy}   # keep this comment
spec:
  template:
    spec:
      containers:
        - name: main
          image: registry.example.com/${policy}:${tag} # {"$imagepolicy": "${policy}"}
`;

/** A values file the manifests are rendered from, outside the manifests path. */
const VALUES = (tag: string) => `deployments:
  - name: db
    image:
      tag: ${tag} # {"$imagepolicy": "db:tag"}
`;

describe('manifests repository over real git smart HTTP', () => {
  let server: Awaited<ReturnType<typeof startGitServer>>;
  beforeAll(async () => {
    server = await startGitServer({
      'apps/web.yaml': DEPLOY('web', '1.0.0'),
      'apps/api.yaml': DEPLOY('api', '1.0.0'),
      'README.md': '# manifests\n',
      'env/values.yaml': VALUES('1.0.0'),
      'env/other.yaml': 'not: editable\n',
    });
  });
  afterAll(() => server.close());

  async function repo(over: Partial<Parameters<typeof openManifestRepo>[0]> = {}) {
    return openManifestRepo({
      url: server.url,
      branch: 'main',
      token: server.token,
      path: 'apps',
      author: { name: 'Orrery Bot', email: 'bot@orrery.test' },
      workdir: await mkdtemp(join(tmpdir(), 'orrery-wd-')),
      logger: testLogger(),
      ...over,
    });
  }

  const setImage = (policy: string, tag: string) => async (files: { yamlFiles(): Promise<string[]>; read(f: string): Promise<string>; write(f: string, t: string): Promise<void> }) => {
    const changed: string[] = [];
    for (const f of await files.yamlFiles()) {
      const { text, changes } = applySetters(await files.read(f), policy, { repository: `registry.example.com/${policy}`, tag });
      if (changes.length > 0) {
        await files.write(f, text);
        changed.push(f);
      }
    }
    return changed;
  };

  it('commits and pushes an edit; git sees the author, the message and a minimal diff', async () => {
    const r = await repo();
    const result = await r.change({ message: 'deploy(web): registry.example.com/web:1.1.0', edit: setImage('web', '1.1.0') });
    expect(result?.branch).toBe('main');
    const check = await server.clone();
    expect((await gitCli(check, 'log', '-1', '--format=%H|%an|%ae|%s')).trim()).toBe(`${result!.sha}|Orrery Bot|bot@orrery.test|deploy(web): registry.example.com/web:1.1.0`);
    const diff = await gitCli(check, 'show', '--format=', '--unified=0', 'HEAD');
    expect(diff).toContain('-          image: registry.example.com/web:1.0.0 # {"$imagepolicy": "web"}');
    expect(diff).toContain('+          image: registry.example.com/web:1.1.0 # {"$imagepolicy": "web"}');
    expect(diff.split('\n').filter((l) => /^[+-][^+-]/.test(l))).toHaveLength(2);
    expect(await readFile(join(check, 'apps/web.yaml'), 'utf8')).toContain('# keep this comment');
  });

  it('an edit that changes nothing makes no commit', async () => {
    const r = await repo();
    const before = await r.head();
    expect(await r.change({ message: 'noop', edit: setImage('web', '1.1.0') })).toBeUndefined();
    expect(await r.head()).toBe(before);
  });

  it('a push rejected because another writer moved the branch is retried on the new tip; both changes survive', async () => {
    let raced = false;
    const r = await repo({
      beforePush: async (attempt) => {
        if (attempt !== 1 || raced) return;
        raced = true;
        // A person pushes a change between our fetch and our push.
        const other = await server.clone();
        await gitCli(other, 'commit', '--allow-empty', '-m', 'a human change');
        await gitCli(other, 'push', '--quiet', 'origin', 'main');
      },
    });
    const result = await r.change({ message: 'deploy(api): 2.0.0', edit: setImage('api', '2.0.0') });
    expect(raced).toBe(true);
    const check = await server.clone();
    const log = (await gitCli(check, 'log', '--format=%s', '-3')).trim().split('\n');
    expect(log[0]).toBe('deploy(api): 2.0.0');
    expect(log[1]).toBe('a human change');
    expect((await gitCli(check, 'rev-parse', 'HEAD')).trim()).toBe(result!.sha);
    expect(await readFile(join(check, 'apps/api.yaml'), 'utf8')).toContain('registry.example.com/api:2.0.0');
  });

  it('pull-request mode pushes a branch made from the base, leaving the base alone', async () => {
    const r = await repo();
    const base = await r.head();
    const result = await r.change({ message: 'deploy(web): 1.2.0', edit: setImage('web', '1.2.0'), targetBranch: 'orrery/web-1.2.0' });
    expect(result?.branch).toBe('orrery/web-1.2.0');
    const check = await server.clone();
    expect((await gitCli(check, 'rev-parse', 'origin/main')).trim()).toBe(base);
    expect((await gitCli(check, 'rev-parse', 'origin/orrery/web-1.2.0')).trim()).toBe(result!.sha);
    expect((await gitCli(check, 'rev-parse', 'origin/orrery/web-1.2.0^')).trim()).toBe(base);
  });

  it('a wrong token is refused', async () => {
    await expect(repo({ token: 'wrong', workdir: await mkdtemp(join(tmpdir(), 'orrery-wd-')) })).rejects.toThrow();
  });

  it('a values file named in the options is editable beside the manifests path, and is not part of the snapshot', async () => {
    const plain = await repo();
    expect(await plain.change({ message: 'x', edit: async (files) => (await files.yamlFiles()).filter((f) => !f.startsWith('apps/')) })).toBeUndefined();
    const r = await repo({ valuesFiles: ['env/values.yaml', 'env/missing.yaml'] });
    let listed: string[] = [];
    const result = await r.change({
      message: 'deploy(db): registry.example.com/db:1.2.0',
      edit: async (files) => {
        listed = await files.yamlFiles();
        return setImage('db', '1.2.0')(files);
      },
    });
    expect(listed).toEqual(['apps/api.yaml', 'apps/web.yaml', 'env/values.yaml']);
    expect(result?.branch).toBe('main');
    const check = await server.clone();
    expect(await readFile(join(check, 'env/values.yaml'), 'utf8')).toBe(VALUES('1.2.0'));
    expect([...(await r.snapshot()).files.keys()]).toEqual(['apps/api.yaml', 'apps/web.yaml']);
    // Only the named file: its neighbour stays out of reach.
    await expect(r.change({ message: 'x', edit: async (files) => [(await files.write('env/other.yaml', 'pwned'), 'env/other.yaml')[1]!] })).rejects.toMatchObject({
      code: 'GIT_PATH_OUTSIDE',
    });
    await expect(repo({ valuesFiles: ['../outside.yaml'] })).rejects.toMatchObject({ code: 'GIT_PATH_OUTSIDE' });
  });

  it('edits cannot leave the manifests path', async () => {
    const r = await repo();
    await expect(r.change({ message: 'x', edit: async (files) => [(await files.write('../README.md', 'pwned'), '../README.md')[1]!] })).rejects.toMatchObject({
      code: 'GIT_PATH_OUTSIDE',
    });
  });

  it("clones the configured branch when the remote's HEAD names a branch that does not exist", async () => {
    // `git init --bare` with master as its default, then a push of main: HEAD -> master, which is missing.
    const other = await startGitServer({ 'apps/web.yaml': DEPLOY('web', '1.0.0') }, 'tok', { head: 'master' });
    try {
      const r = await repo({ url: other.url, token: other.token });
      const result = await r.change({ message: 'deploy(web): 1.1.0', edit: setImage('web', '1.1.0') });
      expect(result?.branch).toBe('main');
      const check = await mkdtemp(join(tmpdir(), 'orrery-check-'));
      await gitCli(check, 'clone', '-q', '-b', 'main', other.bare, '.');
      expect((await gitCli(check, 'rev-parse', 'HEAD')).trim()).toBe(result!.sha);
      expect(await readFile(join(check, 'apps/web.yaml'), 'utf8')).toContain('web:1.1.0');
    } finally {
      await other.close();
    }
  });
});

