import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join, matchesGlob, normalize, relative, resolve, sep } from 'node:path';
import git from 'isomorphic-git';
import nodeHttp from 'isomorphic-git/http/node';
import { OrreryError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import { headFallbackHttp } from './head-fallback.ts';

/**
 * The files of the manifests checkout an edit may read and write: inside the manifests
 * path, and the values files named in the options, nothing else.
 */
export interface RepoFiles {
  /** YAML files under the manifests path, then the values files that exist; relative to the repository root, sorted. */
  yamlFiles(): Promise<string[]>;
  read(file: string): Promise<string>;
  write(file: string, text: string): Promise<void>;
  /** Deletes a file; listing it among the changed files stages the deletion. */
  remove(file: string): Promise<void>;
  /** Whether the file exists. */
  exists(file: string): Promise<boolean>;
}

export interface ChangeRequest {
  /** Edits the checkout; returns the files it changed (none: nothing to commit). */
  edit(files: RepoFiles): Promise<string[]>;
  message: string;
  /** Push to this branch instead of the base branch (pull-request mode), made from the base. */
  targetBranch?: string;
}

export interface ManifestRepo {
  /**
   * Fetches the base branch, applies the edit, commits and pushes. Changes to one repository
   * run one at a time. A push rejected because the branch moved (another writer) is retried:
   * fetch again, re-apply the edit on the new tip, commit, push; so no update is lost.
   * Resolves to the commit, or undefined when the edit changed nothing.
   */
  change(req: ChangeRequest): Promise<{ sha: string; branch: string } | undefined>;
  /** The commit at the tip of the base branch after a fetch. */
  head(): Promise<string>;
  /** Fetches, then reads every YAML file under the manifests path at the tip. */
  snapshot(): Promise<{ revision: string; files: Map<string, string> }>;
  /** Whether `commit` is `revision` or one of its ancestors. */
  contains(revision: string, commit: string): Promise<boolean>;
  /** What one commit did against its first parent: its message and each file it added, changed or deleted, with both contents. */
  changes(commit: string): Promise<CommitChanges>;
}

export interface CommitChanges {
  message: string;
  /** The first parent; undefined for a root commit. */
  parent: string | undefined;
  /** Paths relative to the repository root; `before` or `after` is undefined for an added or deleted file. */
  files: Array<{ file: string; before: string | undefined; after: string | undefined }>;
}

export interface ManifestRepoOptions {
  /** http(s) URL of the repository, or a local path to a git work tree (no fetch or push then). */
  url: string;
  branch: string;
  token?: string | undefined;
  /** Folder of the manifests, relative to the repository root. */
  path: string;
  /**
   * Files outside `path`, relative to the repository root, that edits may also touch (the
   * values file the manifests are rendered from). Not part of {@link ManifestRepo.snapshot}.
   */
  valuesFiles?: readonly string[] | undefined;
  author: { name: string; email: string };
  /** Where the clone lives (ignored for a local path). */
  workdir: string;
  logger: Logger;
  maxPushAttempts?: number;
  /** Test seam: runs before each push attempt (e.g. to race another writer). */
  beforePush?: (attempt: number) => Promise<void>;
}

const isRemote = (url: string) => /^https?:\/\//.test(url);

/** A workdir per repository URL, so that two repositories never share a clone. */
export function defaultWorkdir(dataDir: string, url: string): string {
  return join(dataDir, 'gitops', createHash('sha256').update(url).digest('hex').slice(0, 16));
}

/**
 * The manifests repository through isomorphic-git: clone, fetch, edit, commit and push over
 * smart HTTP with a token.
 *
 * @example
 *   const repo = await openManifestRepo({ url, branch: 'main', token, path: '.', author, workdir, logger });
 *   await repo.change({ message: 'deploy', edit: async (files) => [...] });
 */
export async function openManifestRepo(opts: ManifestRepoOptions): Promise<ManifestRepo> {
  const log = opts.logger.child({ unit: 'git', repo: opts.url.replace(/\/\/[^@/]*@/, '//') });
  const remote = isRemote(opts.url);
  const dir = remote ? opts.workdir : resolve(opts.url);
  const manifestsRoot = resolve(dir, opts.path);
  const isUnder = (abs: string, root: string) => abs === root || abs.startsWith(root + sep);
  const valuesFiles = new Set((opts.valuesFiles ?? []).map((f) => resolve(dir, normalize(f))));
  for (const f of valuesFiles) {
    if (!isUnder(f, dir)) throw new OrreryError('GIT_PATH_OUTSIDE', `values file ${relative(dir, f)} is outside the repository`, { retriable: false });
  }
  const onAuth = () => (opts.token ? { username: 'x-access-token', password: opts.token } : { cancel: true });
  const maxAttempts = opts.maxPushAttempts ?? 5;
  // Fetch the configured branch whatever the remote's HEAD names (see head-fallback.ts).
  const http = headFallbackHttp(nodeHttp, opts.branch);
  let queue: Promise<unknown> = Promise.resolve();

  if (remote) {
    await mkdir(dir, { recursive: true });
    const hasRepo = await readdir(join(dir, '.git')).then(() => true, () => false);
    if (!hasRepo) {
      log.info('cloning the manifests repository');
      await git.clone({ fs, http, dir, url: opts.url, ref: opts.branch, singleBranch: true, onAuth });
    }
  }

  /** Moves the local base branch to the remote tip and checks it out, dropping local leftovers. */
  async function syncToRemote(): Promise<string> {
    if (!remote) return git.resolveRef({ fs, dir, ref: opts.branch });
    const fetched = await git.fetch({ fs, http, dir, url: opts.url, ref: opts.branch, singleBranch: true, onAuth });
    if (!fetched.fetchHead) throw new OrreryError('GIT_FETCH_EMPTY', `branch ${opts.branch} not found on the remote`, { retriable: false });
    await git.writeRef({ fs, dir, ref: `refs/heads/${opts.branch}`, value: fetched.fetchHead, force: true });
    await git.checkout({ fs, dir, ref: opts.branch, force: true });
    return fetched.fetchHead;
  }

  /** A path inside the manifests folder, or a values file; else an error: edits never leave them. */
  function inside(file: string): string {
    const abs = resolve(dir, normalize(file));
    if (!isUnder(abs, manifestsRoot) && !valuesFiles.has(abs)) {
      throw new OrreryError('GIT_PATH_OUTSIDE', `refusing to touch ${file}: outside the manifests path`, { retriable: false });
    }
    return abs;
  }

  /** YAML files under the manifests path: what the sync applies. */
  async function manifestFiles(): Promise<string[]> {
    const out: string[] = [];
    async function walk(at: string): Promise<void> {
      for (const entry of await readdir(at, { withFileTypes: true })) {
        if (entry.name === '.git') continue;
        const p = join(at, entry.name);
        if (entry.isDirectory()) await walk(p);
        else if (/\.ya?ml$/.test(entry.name)) out.push(relative(dir, p));
      }
    }
    await walk(manifestsRoot);
    return out.sort();
  }

  const files: RepoFiles = {
    async yamlFiles() {
      const extra: string[] = [];
      for (const f of valuesFiles) {
        if (!isUnder(f, manifestsRoot) && (await stat(f).then((s) => s.isFile(), () => false))) extra.push(relative(dir, f));
      }
      return [...(await manifestFiles()), ...extra.sort()];
    },
    read: (file) => readFile(inside(file), 'utf8'),
    write: (file, text) => writeFile(inside(file), text),
    remove: (file) => rm(inside(file)),
    exists: (file) => stat(inside(file)).then(() => true, () => false),
  };

  async function attemptChange(req: ChangeRequest): Promise<{ sha: string; branch: string } | undefined> {
    for (let attempt = 1; ; attempt++) {
      const base = await syncToRemote();
      const branch = req.targetBranch ?? opts.branch;
      if (branch !== opts.branch) {
        await git.branch({ fs, dir, ref: branch, object: base, checkout: true, force: true });
      }
      const changed = await req.edit(files);
      if (changed.length === 0) {
        if (branch !== opts.branch) await git.checkout({ fs, dir, ref: opts.branch, force: true });
        return undefined;
      }
      for (const file of changed) {
        const filepath = relative(dir, inside(file)).split(sep).join('/');
        if (await files.exists(file)) await git.add({ fs, dir, filepath });
        else await git.remove({ fs, dir, filepath });
      }
      const now = Math.floor(Date.now() / 1000);
      const sha = await git.commit({
        fs,
        dir,
        message: req.message,
        author: { ...opts.author, timestamp: now },
        committer: { ...opts.author, timestamp: now },
      });
      if (!remote) return { sha, branch };
      await opts.beforePush?.(attempt);
      try {
        const res = await git.push({ fs, http, dir, url: opts.url, ref: branch, remoteRef: branch, onAuth, force: branch !== opts.branch });
        if (!res.ok) throw new OrreryError('GIT_PUSH_REJECTED', `push rejected: ${JSON.stringify(res.refs)}`, { retriable: true });
        log.info({ sha, branch, attempt }, 'pushed');
        return { sha, branch };
      } catch (err) {
        const code = (err as { code?: string }).code;
        const rejected = code === 'PushRejectedError' || code === 'GIT_PUSH_REJECTED';
        if (!rejected || attempt >= maxAttempts) throw err;
        // Someone else moved the branch: start again from its new tip. The edit is
        // re-applied there, so their change and ours both survive.
        log.info({ attempt }, 'push rejected (the branch moved): re-fetching and re-applying');
      }
    }
  }

  return {
    change(req) {
      const run = queue.then(() => attemptChange(req));
      queue = run.catch(() => {});
      return run;
    },
    async head() {
      const run = queue.then(() => syncToRemote());
      queue = run.catch(() => {});
      return run;
    },
    snapshot() {
      const run = queue.then(async () => {
        const revision = await syncToRemote();
        const out = new Map<string, string>();
        for (const f of await manifestFiles()) out.set(f, await files.read(f));
        return { revision, files: out };
      });
      queue = run.catch(() => {});
      return run;
    },
    async changes(commit) {
      const { commit: c } = await git.readCommit({ fs, dir, oid: commit });
      const parent = c.parent[0];
      const trees = parent ? [git.TREE({ ref: parent }), git.TREE({ ref: commit })] : [git.TREE({ ref: commit })];
      const text = async (e: { type(): Promise<string>; content(): Promise<Uint8Array | void> } | null | undefined) =>
        e && (await e.type()) === 'blob' ? Buffer.from((await e.content()) ?? new Uint8Array()).toString('utf8') : undefined;
      const files = (await git.walk({
        fs,
        dir,
        trees,
        map: async (file, entries) => {
          const [a, b] = parent ? entries : [null, entries[0]!];
          // Same tree oid on both sides: nothing below it changed, so do not descend.
          if (a && b && (await a.oid()) === (await b.oid())) return null;
          if (file === '.') return undefined;
          const [before, after] = [await text(a), await text(b)];
          return before === undefined && after === undefined ? undefined : { file, before, after };
        },
      })) as CommitChanges['files'];
      return { message: c.message, parent, files: files.filter(Boolean) };
    },
    async contains(revision, commit) {
      if (revision === commit) return true;
      try {
        return await git.isDescendent({ fs, dir, oid: revision, ancestor: commit, depth: -1 });
      } catch {
        return false;
      }
    },
  };
}

/** Whether a file may change under a policy's file globs (all when absent). */
export function fileAllowed(file: string, globs: readonly string[] | undefined): boolean {
  return !globs || globs.some((g) => matchesGlob(file, g));
}
