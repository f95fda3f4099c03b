import { lstat, readdir, rm, rmdir } from 'node:fs/promises';
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

/**
 * Log rotation for Airflow's task logs, run by a sidecar next to each Celery worker: every
 * interval it deletes logs older than a maximum age, then the oldest logs until the total
 * fits under a byte cap. A file modified in the last `activeSeconds` is never touched:
 * Airflow is probably still writing it (a running task's log), and deleting an open file
 * only hides it while its disk space stays in use.
 *
 * Why delete and not truncate: Airflow writes one file per task try
 * (`dag_id=…/run_id=…/task_id=…/attempt=1.log`), so a finished log is never appended to
 * again, and a whole old file is the unit worth dropping.
 *
 * This file is self-contained (only `node:` imports): the manifests ship it in a
 * ConfigMap, and a stock Node image runs it with Node's type stripping, so no image of
 * our own is needed for the sidecar.
 */

export interface RotateOptions {
  dir: string;
  /** Delete logs whose last change is older than this. */
  maxAgeSeconds: number;
  /** Then delete the oldest logs until the total is at most this. */
  maxTotalBytes: number;
  /** Never delete a file modified less than this long ago. */
  activeSeconds: number;
}

export interface LogFile {
  path: string;
  size: number;
  mtimeMs: number;
}

export interface Removal extends LogFile {
  reason: 'age' | 'size';
}

export interface RotationPlan {
  remove: Removal[];
  totalBytes: number;
  /** Bytes left after the plan. */
  keptBytes: number;
  /** Bytes in files too recent to touch. */
  activeBytes: number;
  /** Still over the cap after the plan: only active files are left to delete. */
  overCap: boolean;
}

/**
 * Decides what to delete; pure. Oldest first (ties by path, so runs are reproducible),
 * by age first and then by size, never a file modified within `activeSeconds` of `nowMs`.
 *
 * @example planRotation(files, { dir, maxAgeSeconds: 7 * 86400, maxTotalBytes: 8e9, activeSeconds: 300 }, Date.now())
 */
export function planRotation(files: readonly LogFile[], opts: RotateOptions, nowMs: number): RotationPlan {
  const sorted = [...files].sort((a, b) => a.mtimeMs - b.mtimeMs || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const isActive = (f: LogFile) => nowMs - f.mtimeMs < opts.activeSeconds * 1000;
  const totalBytes = sorted.reduce((n, f) => n + f.size, 0);
  const remove: Removal[] = [];
  const kept: LogFile[] = [];
  for (const f of sorted) {
    if (!isActive(f) && nowMs - f.mtimeMs > opts.maxAgeSeconds * 1000) remove.push({ ...f, reason: 'age' });
    else kept.push(f);
  }
  let keptBytes = kept.reduce((n, f) => n + f.size, 0);
  for (const f of kept) {
    if (keptBytes <= opts.maxTotalBytes) break;
    if (isActive(f)) continue;
    remove.push({ ...f, reason: 'size' });
    keptBytes -= f.size;
  }
  const activeBytes = sorted.filter(isActive).reduce((n, f) => n + f.size, 0);
  return { remove, totalBytes, keptBytes, activeBytes, overCap: keptBytes > opts.maxTotalBytes };
}

/** Every regular file under `dir` (symlinks are neither followed nor deleted). */
export async function scanLogs(dir: string): Promise<LogFile[]> {
  return (await scanTree(dir)).files;
}

/** The files, and the directories' mtimes as they were before we delete anything. */
async function scanTree(dir: string): Promise<{ files: LogFile[]; dirs: Map<string, number> }> {
  const out: LogFile[] = [];
  const dirs = new Map<string, number>();
  async function walk(at: string): Promise<void> {
    let entries;
    try {
      entries = await readdir(at, { withFileTypes: true });
    } catch (err) {
      // A directory removed while we walk (another rotation, Airflow cleaning up) is fine.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) {
      const p = join(at, e.name);
      if (e.isDirectory()) {
        const st = await lstat(p).catch(() => undefined);
        if (st) dirs.set(p, st.mtimeMs);
        await walk(p);
      } else if (e.isFile()) {
        try {
          const st = await lstat(p);
          out.push({ path: p, size: st.size, mtimeMs: st.mtimeMs });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
    }
  }
  await walk(dir);
  return { files: out, dirs };
}

/**
 * Removes empty directories under `dir` (not `dir` itself) that were older than `minAgeMs`
 * before this run, deepest first. The mtime from before the run counts, since deleting a
 * file freshens its directory's mtime.
 */
async function removeEmptyDirs(dir: string, before: Map<string, number>, nowMs: number, minAgeMs: number): Promise<number> {
  let removed = 0;
  async function walk(at: string): Promise<boolean> {
    let entries;
    try {
      entries = await readdir(at, { withFileTypes: true });
    } catch {
      return false;
    }
    let empty = true;
    for (const e of entries) {
      if (e.isDirectory() && (await walk(join(at, e.name)))) continue;
      empty = false;
    }
    if (!empty || at === dir) return false;
    // A task creates its directory a moment before its log file: leave fresh ones alone.
    const mtimeMs = before.get(at);
    if (mtimeMs === undefined || nowMs - mtimeMs < minAgeMs) return false;
    try {
      await rmdir(at);
      removed++;
      return true;
    } catch {
      return false; // something was written into it meanwhile
    }
  }
  await walk(dir);
  return removed;
}

export interface RotationReport {
  dir: string;
  files: number;
  totalBytes: number;
  removedByAge: number;
  removedBySize: number;
  freedBytes: number;
  keptBytes: number;
  activeBytes: number;
  overCap: boolean;
  removedDirs: number;
  /** The first 50 removed files, oldest first. */
  removed: Array<{ path: string; size: number; reason: 'age' | 'size' }>;
  errors: string[];
}

/**
 * Scans, deletes what {@link planRotation} says, prunes empty directories, and reports.
 *
 * @example const report = await rotateOnce({ dir: '/opt/airflow/logs', maxAgeSeconds: 604800, maxTotalBytes: 8e9, activeSeconds: 300 });
 */
export async function rotateOnce(opts: RotateOptions, nowMs = Date.now()): Promise<RotationReport> {
  const { files, dirs } = await scanTree(opts.dir);
  const plan = planRotation(files, opts, nowMs);
  const errors: string[] = [];
  let freedBytes = 0;
  const done: Removal[] = [];
  for (const f of plan.remove) {
    try {
      await rm(f.path, { force: true });
      freedBytes += f.size;
      done.push(f);
    } catch (err) {
      errors.push(`${f.path}: ${(err as Error).message}`);
    }
  }
  const removedDirs = await removeEmptyDirs(opts.dir, dirs, nowMs, opts.activeSeconds * 1000);
  return {
    dir: opts.dir,
    files: files.length,
    totalBytes: plan.totalBytes,
    removedByAge: done.filter((f) => f.reason === 'age').length,
    removedBySize: done.filter((f) => f.reason === 'size').length,
    freedBytes,
    keptBytes: plan.totalBytes - freedBytes,
    activeBytes: plan.activeBytes,
    overCap: plan.overCap,
    removedDirs,
    removed: done.slice(0, 50).map(({ path, size, reason }) => ({ path, size, reason })),
    errors,
  };
}

/** Options from the command line: `--dir --max-age-hours --max-total-bytes --active-seconds --interval-seconds [--once]`. */
export function parseOptions(argv: string[]): RotateOptions & { intervalSeconds: number; once: boolean } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      dir: { type: 'string' },
      'max-age-hours': { type: 'string' },
      'max-total-bytes': { type: 'string' },
      'active-seconds': { type: 'string', default: '300' },
      'interval-seconds': { type: 'string', default: '600' },
      once: { type: 'boolean', default: false },
    },
  });
  const num = (name: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || v === '' || !Number.isFinite(n) || n < 0) throw new Error(`--${name}: expected a non-negative number, got ${JSON.stringify(v)}`);
    return n;
  };
  if (!values.dir) throw new Error('--dir is required');
  return {
    dir: values.dir,
    maxAgeSeconds: num('max-age-hours', values['max-age-hours']) * 3600,
    maxTotalBytes: num('max-total-bytes', values['max-total-bytes']),
    activeSeconds: num('active-seconds', values['active-seconds']),
    intervalSeconds: Math.max(1, num('interval-seconds', values['interval-seconds'])),
    once: values.once ?? false,
  };
}

/** The sidecar's loop: one JSON line per run on stdout, until SIGTERM. */
export async function main(argv: string[]): Promise<void> {
  const opts = parseOptions(argv);
  const stop = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => stop.abort());
  while (!stop.signal.aborted) {
    try {
      const report = await rotateOnce(opts);
      process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), msg: 'logrotate', ...report })}\n`);
    } catch (err) {
      // A failed run (volume not mounted yet, permissions) is reported and retried.
      process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), msg: 'logrotate failed', error: (err as Error).message })}\n`);
    }
    if (opts.once) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, opts.intervalSeconds * 1000);
      stop.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
    });
  }
}

const entry = process.argv[1];
if (entry && import.meta.url === pathToFileURL(realpathSync(entry)).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`logrotate: ${(err as Error).message}\n`);
    process.exitCode = 2;
  });
}
