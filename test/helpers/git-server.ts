import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** Runs the real git CLI in a folder, as a person would to look at the result. */
export async function gitCli(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await exec('git', args, {
    cwd,
    env: { ...process.env, GIT_AUTHOR_NAME: 'Human', GIT_AUTHOR_EMAIL: 'human@example.com', GIT_COMMITTER_NAME: 'Human', GIT_COMMITTER_EMAIL: 'human@example.com' },
  });
  return stdout;
}

/**
 * A real git smart-HTTP server on loopback: `git http-backend` (the CGI that ships with
 * git) behind a small Node server that checks a token in HTTP Basic auth. It serves one
 * bare repository, seeded with the given files on `main`. `head` is the branch the bare
 * repository's HEAD names (default `main`): `master` gives what a plain `git init --bare`
 * on an older git default plus a push of `main` leaves, a HEAD naming no branch.
 */
export async function startGitServer(seed: Record<string, string>, token = 'git-token-123', opts: { head?: string } = {}) {
  const root = await mkdtemp(join(tmpdir(), 'orrery-git-'));
  const bare = join(root, 'manifests.git');
  await exec('git', ['init', '--bare', `--initial-branch=${opts.head ?? 'main'}`, bare]);
  const work = join(root, 'seed');
  await exec('git', ['init', '--initial-branch=main', work]);
  for (const [file, text] of Object.entries(seed)) {
    await mkdir(dirname(join(work, file)), { recursive: true });
    await writeFile(join(work, file), text);
  }
  await gitCli(work, 'add', '-A');
  await gitCli(work, 'commit', '-m', 'seed manifests');
  await gitCli(work, 'push', bare, 'main');

  const server: Server = createServer((req, res) => {
    const auth = req.headers.authorization ?? '';
    const [, password] = Buffer.from(auth.replace(/^Basic /, ''), 'base64').toString().split(':');
    if (password !== token) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' });
      res.end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    const cgi = spawn('git', ['http-backend'], {
      env: {
        ...process.env,
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        REMOTE_USER: 'orrery',
        REMOTE_ADDR: '127.0.0.1',
        ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: String(req.headers['content-encoding']) } : {}),
      },
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      headersDone = true;
      const headers: Record<string, string> = {};
      let status = 200;
      for (const line of head.subarray(0, end).toString().split('\r\n')) {
        const i = line.indexOf(':');
        const [k, v] = [line.slice(0, i).trim(), line.slice(i + 1).trim()];
        if (k.toLowerCase() === 'status') status = Number(v.split(' ')[0]);
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end + 4));
    });
    cgi.stdout.on('end', () => res.end());
    cgi.on('error', () => res.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/manifests.git`;
  return {
    url,
    bare,
    token,
    root,
    /** A fresh clone with the real git CLI, for assertions. */
    async clone(): Promise<string> {
      const dir = await mkdtemp(join(tmpdir(), 'orrery-check-'));
      await exec('git', ['clone', '--quiet', bare, dir]);
      return dir;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
