import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { OrreryError } from './errors.ts';
import type { Logger } from './logger.ts';

/**
 * A directory that only one process may use at a time (the embedded bus's log, the
 * embedded store's database files): two writers would overwrite each other's files.
 */

const LOCK_FILE = '.lock';

/** Directories locked by this process and not released yet. */
const lockedDirs = new Set<string>();

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface LockDirOptions {
  /** The error code thrown when the directory is taken, e.g. `BUS_LOCKED`. */
  code: string;
  /** What holds it, for messages: "an embedded bus". */
  what: string;
  /** Appended to the message when another process holds it: what to do instead. */
  hint?: string;
  logger: Logger;
  /** The lock file's name inside the directory. Default `.lock`. */
  file?: string;
}

/**
 * Takes `dir` (created when missing) for this process: a lock file holding our pid. A lock
 * whose process is gone (a crash) is taken over. Returns the release function.
 *
 * @example
 *   const release = await lockDir(dir, { code: 'BUS_LOCKED', what: 'an embedded bus', logger });
 */
export async function lockDir(dir: string, opts: LockDirOptions): Promise<() => Promise<void>> {
  const abs = resolve(dir);
  const retriable = { retriable: false };
  const path = join(abs, opts.file ?? LOCK_FILE);
  // Per lock file: one directory may hold several (the embedded bus's and store's files).
  if (lockedDirs.has(path)) throw new OrreryError(opts.code, `${abs} is already open by ${opts.what} of this process`, retriable);
  lockedDirs.add(path);
  try {
    await mkdir(abs, { recursive: true });
    for (let attempt = 1; ; attempt++) {
      try {
        const fh = await open(path, 'wx');
        try {
          await fh.writeFile(String(process.pid));
          await fh.sync();
        } finally {
          await fh.close();
        }
        await fsyncDir(abs);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
        const held = Number.isSafeInteger(holder) && holder !== process.pid && isAlive(holder);
        if (held || attempt > 1) {
          const who = `pid ${Number.isNaN(holder) ? 'unknown' : holder}`;
          throw new OrreryError(opts.code, `${abs} is in use by another process (${who})${opts.hint ? `: ${opts.hint}` : ''}`, retriable);
        }
        opts.logger.warn({ holder, dir: abs }, 'taking over the lock of a process that is gone');
        await unlink(path).catch(() => {});
      }
    }
  } catch (err) {
    lockedDirs.delete(path);
    throw err;
  }
  return async function releaseLock() {
    await unlink(path).catch(() => {});
    lockedDirs.delete(path);
  };
}
