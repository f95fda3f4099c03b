import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { ConfigError } from '../core/errors.ts';
import { RENDER_HELP } from './cli-help.ts';
import { renderCompose } from './render/compose.ts';
import { kubernetesFiles, kubernetesStream, renderKubernetes } from './render/kubernetes.ts';
import { renderMarathon } from './render/marathon.ts';
import { loadValues } from './values.ts';

/**
 * `orrery render`: values file in, manifests out. The render itself is pure
 * (manifests/render); this module is the edge that reads the values file and writes files.
 */

export type RenderTarget = 'kubernetes' | 'compose' | 'marathon';
const TARGETS: readonly RenderTarget[] = ['kubernetes', 'compose', 'marathon'];

const BOOTSTRAP = 'bootstrap/';

export interface RenderOptions {
  valuesPath: string;
  /** Where to write; without it, kubernetes is one multi-document YAML (returned as `stdout`). */
  outDir?: string | undefined;
  target: RenderTarget;
  /** compose: which Airflow deployment (default: the first). */
  deployment?: string | undefined;
  /**
   * Where the objects the GitOps controller must not apply go (its own ClusterRole and
   * binding, for an admin to apply once): default `bootstrap/` beside outDir, outside the
   * tree the controller syncs.
   */
  bootstrapDir?: string | undefined;
  /** Delete `.yaml` files under outDir that the render no longer produces. */
  prune?: boolean | undefined;
  /** Write nothing; report the files whose content differs from outDir's. */
  check?: boolean | undefined;
}

export interface RenderResult {
  /** Relative path → content, as rendered (`bootstrap/…` goes to bootstrapDir). */
  files: Map<string, string>;
  /** Files written (or, with check, that differ or are missing). */
  changed: string[];
  /** Files deleted by prune (or, with check, that would be). */
  stale: string[];
  /** The single-stream form, when there is no outDir. */
  stdout?: string;
}

function listYaml(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (at: string) => {
    for (const e of readdirSync(at, { withFileTypes: true })) {
      const p = join(at, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(e.name)) out.push(relative(dir, p).split('\\').join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

/**
 * Renders a values file for a target, and writes the files under `outDir` (only those whose
 * content changed, so a re-render leaves mtimes and git alone), or checks them.
 *
 * @example await renderToFiles({ valuesPath: 'manifests/environments/dev/values.yaml', outDir: 'manifests/environments/dev/rendered', target: 'kubernetes', prune: true })
 */
export async function renderToFiles(opts: RenderOptions): Promise<RenderResult> {
  const values = loadValues(opts.valuesPath);
  let files: Map<string, string>;
  let stdout: string | undefined;
  if (opts.target === 'kubernetes') {
    const manifests = renderKubernetes(values);
    files = kubernetesFiles(manifests);
    if (!opts.outDir) stdout = kubernetesStream(manifests);
  } else if (opts.target === 'compose') {
    try {
      files = renderCompose(values, { deployment: opts.deployment }).files;
    } catch (err) {
      throw new ConfigError((err as Error).message, { cause: err });
    }
    if (!opts.outDir) stdout = files.get('docker-compose.yml');
  } else if (opts.target === 'marathon') {
    files = renderMarathon(values).files;
    if (!opts.outDir) stdout = files.get('marathon.json');
  } else {
    throw new ConfigError(`unknown target "${String(opts.target)}": choose ${TARGETS.join(', ')}`);
  }
  const changed: string[] = [];
  const stale: string[] = [];
  if (opts.outDir) {
    const out = opts.outDir;
    const bootstrapDir = opts.bootstrapDir ?? join(out, '..', 'bootstrap');
    const where = (rel: string) => (opts.target === 'kubernetes' && rel.startsWith(BOOTSTRAP) ? join(bootstrapDir, rel.slice(BOOTSTRAP.length)) : join(out, rel));
    for (const [rel, text] of [...files].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const path = where(rel);
      const current = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
      if (current === text) continue;
      changed.push(rel);
      if (!opts.check) {
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, text);
      }
    }
    if (opts.prune || opts.check) {
      const inOut = new Set([...files.keys()].filter((rel) => where(rel) === join(out, rel)));
      for (const rel of listYaml(out)) {
        if (inOut.has(rel)) continue;
        stale.push(rel);
        if (opts.prune && !opts.check) rmSync(join(out, rel));
      }
    }
  }
  return { files, changed, stale, ...(stdout === undefined ? {} : { stdout }) };
}

/**
 * The `orrery render` command: `args` are the positionals after `render`, `flags` the
 * parsed `RENDER_OPTIONS` (./cli-help.ts). Returns the exit code; bad usage or values throw a
 * ConfigError (exit 2 in the CLI).
 *
 * @example await renderCommand(['values.yaml'], { out: 'rendered', target: 'kubernetes' })
 */
export async function renderCommand(
  args: string[],
  flags: { values?: string | undefined; out?: string | undefined; 'bootstrap-out'?: string | undefined; target?: string | undefined; deployment?: string | undefined; prune?: boolean | undefined; check?: boolean | undefined },
  io: { stdout: (s: string) => void; stderr: (s: string) => void } = { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) },
): Promise<number> {
  const [valuesPath, ...extra] = flags.values !== undefined ? [flags.values, ...args] : args;
  if (!valuesPath || extra.length > 0) throw new ConfigError(`usage: ${RENDER_HELP.usage}`);
  const target = (flags.target ?? 'kubernetes') as RenderTarget;
  if (!TARGETS.includes(target)) throw new ConfigError(`--target: expected ${TARGETS.join(', ')}, got "${target}"`);
  if ((flags.prune || flags.check) && !flags.out) throw new ConfigError('--prune and --check need --out');
  const result = await renderToFiles({ valuesPath, outDir: flags.out, bootstrapDir: flags['bootstrap-out'], target, deployment: flags.deployment, prune: flags.prune, check: flags.check });
  if (result.stdout !== undefined) {
    io.stdout(result.stdout);
    return 0;
  }
  if (flags.check) {
    const problems = [...result.changed.map((f) => `out of date: ${f}`), ...result.stale.map((f) => `not rendered any more: ${f}`)];
    for (const p of problems) io.stderr(`${p}\n`);
    if (problems.length > 0) io.stderr(`run: orrery render ${valuesPath} --out ${flags.out} --target ${target} --prune\n`);
    return problems.length > 0 ? 1 : 0;
  }
  io.stderr(`rendered ${result.files.size} files into ${flags.out}: ${result.changed.length} changed${flags.prune ? `, ${result.stale.length} removed` : ''}\n`);
  return 0;
}
