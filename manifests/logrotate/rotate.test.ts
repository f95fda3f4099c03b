import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseOptions, planRotation, rotateOnce, scanLogs, type LogFile } from './rotate.ts';

const NOW = Date.parse('2025-06-01T12:00:00Z');
const HOUR = 3600_000;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'orrery-logrotate-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Makes a file of `size` bytes last modified `ageMs` before NOW. */
async function file(rel: string, size: number, ageMs: number): Promise<string> {
  const p = join(dir, rel);
  await mkdir(dirname(p), { recursive: true });
  await writeFile(p, Buffer.alloc(size, 120));
  const t = new Date(NOW - ageMs);
  await utimes(p, t, t);
  return p;
}

async function remaining(): Promise<string[]> {
  return (await scanLogs(dir)).map((f) => relative(dir, f.path)).sort();
}

const opts = (o: Partial<{ maxAgeSeconds: number; maxTotalBytes: number; activeSeconds: number }> = {}) => ({
  dir,
  maxAgeSeconds: 24 * 3600,
  maxTotalBytes: 1_000_000,
  activeSeconds: 300,
  ...o,
});

describe('log rotation on a directory', () => {
  it('deletes logs older than the maximum age and keeps the younger ones', async () => {
    await file('dag_id=a/run_id=1/task_id=t/attempt=1.log', 100, 48 * HOUR);
    await file('dag_id=a/run_id=2/task_id=t/attempt=1.log', 100, 2 * HOUR);
    const report = await rotateOnce(opts(), NOW);
    expect(await remaining()).toEqual(['dag_id=a/run_id=2/task_id=t/attempt=1.log']);
    expect(report).toMatchObject({ files: 2, totalBytes: 200, removedByAge: 1, removedBySize: 0, freedBytes: 100, keptBytes: 100, overCap: false });
    expect(report.removed).toEqual([{ path: join(dir, 'dag_id=a/run_id=1/task_id=t/attempt=1.log'), size: 100, reason: 'age' }]);
  });

  it('deletes the oldest logs until the total fits under the cap', async () => {
    await file('a.log', 400, 5 * HOUR);
    await file('b.log', 400, 4 * HOUR);
    await file('c.log', 400, 3 * HOUR);
    await file('d.log', 400, 2 * HOUR);
    const report = await rotateOnce(opts({ maxTotalBytes: 1000 }), NOW);
    expect(await remaining()).toEqual(['c.log', 'd.log']);
    expect(report).toMatchObject({ removedBySize: 2, freedBytes: 800, keptBytes: 800, overCap: false });
    expect(report.removed.map((r) => r.reason)).toEqual(['size', 'size']);
  });

  it('applies age first, then size', async () => {
    await file('old.log', 10, 30 * HOUR);
    await file('big.log', 900, 3 * HOUR);
    await file('new.log', 200, 1 * HOUR);
    const report = await rotateOnce(opts({ maxTotalBytes: 500 }), NOW);
    expect(await remaining()).toEqual(['new.log']);
    expect(report.removed.map((r) => `${r.reason}:${relative(dir, r.path)}`)).toEqual(['age:old.log', 'size:big.log']);
  });

  it('never deletes a file modified within activeSeconds, even over the cap, and says so', async () => {
    await file('done.log', 500, 2 * HOUR);
    await file('running.log', 2000, 10_000); // 10 s ago: being written
    const report = await rotateOnce(opts({ maxTotalBytes: 1000 }), NOW);
    expect(await remaining()).toEqual(['running.log']);
    expect(report).toMatchObject({ removedBySize: 1, activeBytes: 2000, keptBytes: 2000, overCap: true });
  });

  it('keeps an old-looking but active file out of the age rule too (activeSeconds wins)', () => {
    const files: LogFile[] = [{ path: 'x', size: 1, mtimeMs: NOW - 1000 }];
    expect(planRotation(files, { dir, maxAgeSeconds: 0, maxTotalBytes: 0, activeSeconds: 60 }, NOW).remove).toEqual([]);
  });

  it('orders equal mtimes by path, so every run decides the same', () => {
    const files: LogFile[] = [
      { path: 'b', size: 10, mtimeMs: NOW - HOUR },
      { path: 'a', size: 10, mtimeMs: NOW - HOUR },
    ];
    expect(planRotation(files, { dir, maxAgeSeconds: 86400, maxTotalBytes: 10, activeSeconds: 0 }, NOW).remove.map((r) => r.path)).toEqual(['a']);
  });

  it('removes directories left empty, but not fresh ones nor the root', async () => {
    await file('dag_id=a/run_id=1/task_id=t/attempt=1.log', 10, 48 * HOUR);
    const old = new Date(NOW - 48 * HOUR);
    for (const d of ['dag_id=a/run_id=1/task_id=t', 'dag_id=a/run_id=1', 'dag_id=a']) await utimes(join(dir, d), old, old);
    await mkdir(join(dir, 'dag_id=b/run_id=2'), { recursive: true }); // just created: a task about to log
    const report = await rotateOnce(opts(), NOW);
    expect(report.removedDirs).toBe(3);
    expect(existsSync(join(dir, 'dag_id=a'))).toBe(false);
    expect(existsSync(join(dir, 'dag_id=b/run_id=2'))).toBe(true);
    expect(existsSync(dir)).toBe(true);
  });

  it('does nothing when everything fits and is young', async () => {
    await file('a.log', 10, HOUR);
    const report = await rotateOnce(opts(), NOW);
    expect(report).toMatchObject({ removedByAge: 0, removedBySize: 0, freedBytes: 0, removed: [], errors: [] });
  });

  it('parses its command line and refuses bad numbers', () => {
    expect(parseOptions(['--dir', '/logs', '--max-age-hours', '168', '--max-total-bytes', '8000', '--active-seconds', '60', '--interval-seconds', '30'])).toEqual({
      dir: '/logs',
      maxAgeSeconds: 168 * 3600,
      maxTotalBytes: 8000,
      activeSeconds: 60,
      intervalSeconds: 30,
      once: false,
    });
    expect(() => parseOptions(['--dir', '/logs', '--max-age-hours', 'x', '--max-total-bytes', '1'])).toThrow(/max-age-hours/);
    expect(() => parseOptions(['--max-age-hours', '1', '--max-total-bytes', '1'])).toThrow(/--dir/);
  });

  it('runs as a program from a file with a .mts name, as the sidecar does (type stripping)', async () => {
    // The sidecar mounts this file from a ConfigMap as logrotate.mts and runs it with a
    // stock Node image, so it must run with `node` alone.
    const { readFile } = await import('node:fs/promises');
    const script = join(dir, '..', `${relative(tmpdir(), dir)}-logrotate.mts`);
    await writeFile(script, await readFile(new URL('./rotate.ts', import.meta.url), 'utf8'));
    try {
      await file('old.log', 10, 400 * 24 * HOUR);
      const { stdout } = await promisify(execFile)(process.execPath, [script, '--dir', dir, '--max-age-hours', '1', '--max-total-bytes', '100', '--once']);
      const line = JSON.parse(stdout.trim()) as { msg: string; removedByAge: number };
      expect(line).toMatchObject({ msg: 'logrotate', removedByAge: 1 });
      expect(await remaining()).toEqual([]);
    } finally {
      await rm(script, { force: true });
    }
  });
});
