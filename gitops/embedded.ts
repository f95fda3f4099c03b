import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { cp, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import git from 'isomorphic-git';
import semver from 'semver';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../core/errors.ts';
import { GitopsConfig, type ImagePolicy } from '../core/gitops-config.ts';
import type { Logger } from '../core/logger.ts';
import { writePrivateFile } from '../core/private-file.ts';

/**
 * The GitOps default of `orrery start` when the config has no `gitops` section at all, so
 * that a first run has the whole platform, registry webhooks to deploy records included,
 * with nothing set up:
 *
 * - **The manifests repository** is a local git repository, `<dataDir>/manifests`, a work
 *   tree (what `gitops/source/git.ts` takes as a local `repo.url`). The first start creates
 *   it with isomorphic-git and commits a copy of Orrery's own example environment,
 *   `manifests/environments/dev` (values.yaml, rendered/, bootstrap/), at the same path, so
 *   its values file and its render's paths stay true. It is built beside and renamed into
 *   place, so a start that dies halfway leaves no half repository. Later starts use what is
 *   there, commits included.
 * - **The image policies** are the ones the environment's render declares for Orrery's
 *   config (the orrery-config ConfigMap in rendered/orrery/config.yaml; see
 *   manifests/render/policies.ts), read from the repository at each start, with their
 *   repo path and values files: a push of `registry.dev.example.com/ml/airflow:1.5.0` moves
 *   the ml team's marked tag in values.yaml and its images in rendered/, in one commit.
 * - **The receiver** is `generic` (Standard Webhooks signatures, gitops/receivers/generic.ts):
 *   any CI job or script can sign with a shared secret, where the registry receivers each
 *   want a particular registry. The secret is generated on the first start, kept in
 *   `<dataDir>/gitops-webhook-secret` (0600, like the demo write key), printed once on
 *   stderr and never logged.
 * - **The sync runs in plan mode**, whatever KUBECONFIG says: KUBECONFIG is set on many
 *   machines, and nobody asked for the example environment in their cluster. Each commit
 *   ends as a `planned` deploy whose timeline names the objects it would change.
 *
 * `gitops: { enabled: false }` turns GitOps off; any real gitops section replaces all of it.
 */

/** The example environment the starter repository holds, at this path in it too. */
export const STARTER_ENVIRONMENT = 'manifests/environments/dev';
const STARTER_SOURCE = fileURLToPath(new URL(`../${STARTER_ENVIRONMENT}/`, import.meta.url));
/** Where, in the environment, its render keeps Orrery's config (with the image policies). */
const RENDERED_CONFIG = 'rendered/orrery/config.yaml';
export const EMBEDDED_REPO_DIR = 'manifests';
export const EMBEDDED_SECRET_FILE = 'gitops-webhook-secret';
const BRANCH = 'main';
const AUTHOR = { name: 'Orrery', email: 'orrery@localhost' };

export interface EmbeddedGitops {
  config: GitopsConfig;
  repoDir: string;
  secretFile: string;
  /** Set only on the start that generated it: printed once, then only its file is named. */
  newSecret: string | undefined;
  createdRepo: boolean;
  /** A push that makes a commit now: a policy's image and a tag newer than the marked one. */
  example: { image: string; tag: string; policy: string } | undefined;
}

/**
 * Creates (first start) or opens the embedded GitOps default under the data dir, logs each
 * choice, and returns the gitops config to run with.
 *
 * @example
 *   const embedded = await ensureEmbeddedGitops({ dataDir: config.dataDir, logger, alone: false });
 *   const cfg = { ...config, gitops: embedded.config };
 */
export async function ensureEmbeddedGitops(opts: { dataDir: string; logger: Logger; alone: boolean }): Promise<EmbeddedGitops> {
  const log = opts.logger.child({ component: 'gitops' });
  if (opts.alone) {
    log.warn('gitops: no gitops section in the config: running on the embedded default, which is for trying Orrery out; configure gitops (repo, receivers, policies), or set gitops: { enabled: false }');
  }
  const repoDir = join(opts.dataDir, EMBEDDED_REPO_DIR);
  const createdRepo = await ensureRepo(opts.dataDir, repoDir);
  const secretFile = join(opts.dataDir, EMBEDDED_SECRET_FILE);
  const { secret, created } = await ensureSecret(secretFile);

  const rendered = await renderedGitops(repoDir);
  const parsed = GitopsConfig.safeParse({
    repo: { url: repoDir, branch: BRANCH, path: rendered.path, valuesFiles: rendered.valuesFiles, author: AUTHOR },
    receivers: { generic: { secret } },
    policies: rendered.policies,
  });
  if (!parsed.success) {
    throw new ConfigError(`the embedded GitOps default: ${join(repoDir, STARTER_ENVIRONMENT, RENDERED_CONFIG)}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const config = parsed.data;

  log.info(
    { adapter: 'local-git', default: true, dir: repoDir, created: createdRepo, environment: STARTER_ENVIRONMENT },
    `gitops: manifests repo: local git repository at ${repoDir} (default; set gitops.repo.url)${createdRepo ? `, created with Orrery's example environment ${STARTER_ENVIRONMENT}` : ''}`,
  );
  log.info(
    { receivers: ['generic'], secretFile, policies: config.policies.map((p) => p.name) },
    `gitops: registry webhooks at /webhooks/registry/generic, signed with the secret in ${secretFile} (default${created ? '; generated now, printed on stderr' : ''}); ${config.policies.length} image policies from the environment's render`,
  );
  log.info({ mode: 'plan', default: true }, 'gitops: sync in plan mode (default: nothing is applied to a cluster; KUBECONFIG applies with a gitops section only)');

  return { config, repoDir, secretFile, newSecret: created ? secret : undefined, createdRepo, example: await examplePush(repoDir, config) };
}

/** The repository: there already, or built beside and renamed into place. */
async function ensureRepo(dataDir: string, repoDir: string): Promise<boolean> {
  if (await exists(join(repoDir, '.git'))) return false;
  if (await exists(repoDir)) throw new ConfigError(`${repoDir} exists and is not a git repository: move it away, or configure gitops.repo.url`);
  await mkdir(dataDir, { recursive: true });
  const building = join(dataDir, `.${EMBEDDED_REPO_DIR}-${randomBytes(4).toString('hex')}`);
  try {
    await cp(STARTER_SOURCE, join(building, STARTER_ENVIRONMENT), { recursive: true });
    await writeFile(
      join(building, 'README.md'),
      `# manifests (Orrery's embedded default)

\`orrery start\` created this repository because its config has no \`gitops\` section. It
holds a copy of Orrery's example environment, \`${STARTER_ENVIRONMENT}\`. Registry webhooks
for its images (\`POST /webhooks/registry/generic\`) commit here; the sync only plans.

Point \`gitops.repo.url\` at your own manifests repository to leave this default.
`,
    );
    await git.init({ fs, dir: building, defaultBranch: BRANCH });
    for (const file of await filesUnder(building)) await git.add({ fs, dir: building, filepath: file });
    const now = Math.floor(Date.now() / 1000);
    await git.commit({
      fs,
      dir: building,
      message: `Starter manifests: Orrery's example environment ${STARTER_ENVIRONMENT}`,
      author: { ...AUTHOR, timestamp: now },
      committer: { ...AUTHOR, timestamp: now },
    });
    await rename(building, repoDir);
  } catch (err) {
    await rm(building, { recursive: true, force: true });
    throw err;
  }
  return true;
}

async function filesUnder(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && !relative(root, e.parentPath).split(sep).includes('.git')) out.push(relative(root, join(e.parentPath, e.name)).split(sep).join('/'));
  }
  return out.sort();
}

/** The signing secret: read, or generated and kept 0600 (a start that died halfway rewrites it). */
async function ensureSecret(file: string): Promise<{ secret: string; created: boolean }> {
  const existing = await readFile(file, 'utf8').then((t) => t.trim(), () => undefined);
  if (existing) {
    if (!/^whsec_[A-Za-z0-9+/=]{16,}$/.test(existing)) throw new ConfigError(`${file}: not a Standard Webhooks secret (whsec_ and base64); delete it to have a new one generated`);
    return { secret: existing, created: false };
  }
  const secret = `whsec_${randomBytes(32).toString('base64')}`;
  await writePrivateFile(file, `${secret}\n`);
  return { secret, created: true };
}

/** The gitops section of the environment's rendered Orrery config, as it is in the repository now. */
async function renderedGitops(repoDir: string): Promise<{ path: string; valuesFiles: string[]; policies: Array<Partial<ImagePolicy>> }> {
  const file = join(repoDir, STARTER_ENVIRONMENT, RENDERED_CONFIG);
  let gitops: { repo?: { path?: string; valuesFiles?: string[] }; policies?: Array<Partial<ImagePolicy>> } | undefined;
  try {
    const configMap = parseYaml((await readFile(file, 'utf8')).replace(/^---\n/, '')) as { data?: Record<string, string> };
    ({ gitops } = parseYaml(configMap.data?.['orrery.yaml'] ?? '') as { gitops?: typeof gitops });
  } catch (err) {
    throw new ConfigError(`the embedded GitOps default reads its image policies from ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (!gitops?.repo?.path || !gitops.policies) throw new ConfigError(`${file}: no gitops.repo.path or gitops.policies in the orrery.yaml it holds`);
  return { path: gitops.repo.path, valuesFiles: gitops.repo.valuesFiles ?? [], policies: gitops.policies };
}

/**
 * A push for the banner's example: the first semver policy's image (the ml team's Airflow
 * in the dev environment), with the next minor version after the tag marked in the values
 * file, so it makes a commit now. Undefined when the repository no longer fits.
 */
async function examplePush(repoDir: string, config: GitopsConfig): Promise<EmbeddedGitops['example']> {
  const policy = config.policies.find((p) => 'semver' in p.tags);
  const valuesFile = config.repo.valuesFiles[0];
  if (!policy || !valuesFile) return undefined;
  const text = await readFile(join(repoDir, valuesFile), 'utf8').catch(() => '');
  const marker = new RegExp(`:\\s*"?([^\\s"#]+)"?\\s*#\\s*\\{"\\$imagepolicy":\\s*"${policy.name}:tag"\\}`).exec(text);
  const next = marker ? semver.inc(marker[1]!.replace(/^v/, ''), 'minor') : null;
  return next ? { image: policy.image, tag: next, policy: policy.name } : undefined;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

/**
 * What `orrery start` prints on stderr while the default is in use: where the webhooks go,
 * and on the first start the secret itself and a signed push to copy (openssl and curl;
 * the command reads the secret from its file).
 */
export function embeddedGitopsBanner(e: EmbeddedGitops, baseUrl: string): string {
  const url = `${baseUrl}/webhooks/registry/generic`;
  if (!e.newSecret) {
    return `\norrery: GitOps runs on its embedded default: manifests in ${e.repoDir}, plan mode; registry webhooks: POST ${url}, signed with the secret in ${e.secretFile}\n`;
  }
  const lines = [
    '',
    `orrery: GitOps runs on its embedded default: the manifests repository is a local git repository at ${e.repoDir}`,
    `  (Orrery's example environment ${STARTER_ENVIRONMENT}), and the sync only plans: nothing is applied to a cluster.`,
    `  registry webhooks: POST ${url}, signed the Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature)`,
    `  signing secret: ${e.newSecret}   (kept in ${e.secretFile}, mode 0600; shown this once)`,
  ];
  if (e.example) {
    const body = JSON.stringify({ image: e.example.image, tag: e.example.tag });
    lines.push(
      `  push a new image (policy ${e.example.policy}):`,
      '',
      `  secret=$(cat ${e.secretFile}) body='${body}' id=push-$(date +%s) ts=$(date +%s)`,
      `  sig=$(printf '%s' "$id.$ts.$body" | openssl dgst -sha256 -binary -mac HMAC -macopt hexkey:$(printf '%s' "\${secret#whsec_}" | base64 -d | od -An -v -tx1 | tr -d ' \\n') | base64)`,
      `  curl -sS -H 'content-type: application/json' -H "webhook-id: $id" -H "webhook-timestamp: $ts" -H "webhook-signature: v1,$sig" -d "$body" ${url}`,
      '',
      `  then see the commit (git -C ${e.repoDir} log -p -1) and the deploy in Pilot (${baseUrl}/ui/deploys).`,
    );
  }
  lines.push('');
  return lines.join('\n');
}
