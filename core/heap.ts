/**
 * Gives back what starting up left in V8's heap, once a process is serving.
 *
 * Loading the modules and building the components leaves garbage and the bytecode of code
 * that ran once (module bodies, config parsing, schema building). V8 collects it only when
 * allocation triggers a collection, and its memory reducer, which returns the freed pages,
 * starts only after one: an idle service keeps all of it. Measured on `orrery start ingest`
 * (Kafka, Postgres, Redis; Node 24; `--max-semi-space-size=4`), 5 s after start: RSS 128 →
 * 103 MiB, heap used 44 → 25 MiB, after one last-resort collection (which also releases the
 * pages it frees). A regular major collection frees the same heap but keeps the pages until
 * the memory reducer runs (RSS 130 → 108 MiB 15 s later).
 *
 * The collection is V8's `gc()` extension, taken from a fresh vm context with the flag on
 * for that moment only: no `gc` is left on the global object, nor in later contexts.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFn = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async'; flavor?: 'regular' | 'last-resort' }) => void;

export interface Settled {
  rssBefore: number;
  rssAfter: number;
  heapUsedBefore: number;
  heapUsedAfter: number;
  ms: number;
}

export function settleHeap(): Settled {
  const rssBefore = process.memoryUsage.rss();
  const heapUsedBefore = process.memoryUsage().heapUsed;
  const started = performance.now();
  let gc = (globalThis as { gc?: GcFn }).gc;
  if (typeof gc !== 'function') {
    setFlagsFromString('--expose-gc');
    try {
      gc = runInNewContext('gc') as GcFn;
    } finally {
      setFlagsFromString('--no-expose-gc');
    }
  }
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return { rssBefore, rssAfter: process.memoryUsage.rss(), heapUsedBefore, heapUsedAfter: process.memoryUsage().heapUsed, ms: performance.now() - started };
}

/**
 * The embedded default's V8 heap limit, in MiB. V8 grows a heap by a factor that it caps by
 * the heap limit: 4× on a machine whose default limit is 2 GiB or more, less below. Under the
 * embedded bench's load (`npm run bench -- embedded`, 2 cores, 2026-12-06) the whole
 * platform in one process peaks at 239–267 MiB with node's default limit and 178 MiB with
 * this one, at the same events/s (2124–2349 vs 2153–2389); its live heap is a few tens of
 * MiB, far below the limit. On Kafka the same flag costs the stages ~25% more CPU per
 * event, so they keep node's default (bench/README.md, "Memory").
 */
export const EMBEDDED_HEAP_LIMIT_MIB = 1024;

const HEAP_SIZE_FLAG = /^--max[-_](old[-_]space|heap)[-_]size\b/;

/**
 * Replaces this process by itself with V8's heap limit at `mib` (process.execve: the same
 * pid, stdio and environment), unless a heap size is set already, on node's command line
 * (ORRERY_NODE_FLAGS, bin/node-flags) or in NODE_OPTIONS: the operator's choice wins.
 * Returns only when it does not restart. Call it before anything is written or opened.
 *
 * @example if (embedded) restartWithHeapLimit(EMBEDDED_HEAP_LIMIT_MIB);
 */
export function restartWithHeapLimit(mib: number): void {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => HEAP_SIZE_FLAG.test(a));
  if (given || typeof process.execve !== 'function') return;
  try {
    process.execve(process.execPath, [process.execPath, ...process.execArgv, `--max-old-space-size=${mib}`, ...process.argv.slice(1)], process.env);
  } catch {
    // Not replaced (the binary could not be executed again): go on with node's default
    // limit, which the start's log line then names.
  }
}
