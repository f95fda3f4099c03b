import cluster, { type Worker } from 'node:cluster';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { AggregatorRegistry } from 'prom-client';
import type { Logger } from './logger.ts';
import type { Registry } from './metrics.ts';

/**
 * Several processes of one component sharing its port (node:cluster): one Node process is
 * one core, and `orrery start ingest --workers N` uses N. The primary only supervises: it
 * forks the workers, restarts one that dies, answers their requests for the cluster's
 * metrics (summed across workers by prom-client's AggregatorRegistry), and on SIGTERM
 * passes the signal on and waits until every worker has drained.
 */

/** What a worker knows of its place in the cluster. */
export interface WorkerIdentity {
  id: number;
  of: number;
}

const WORKER_ENV = 'ORRERY_WORKER_ID';
const WORKERS_ENV = 'ORRERY_WORKERS';
const METRICS_REQ = 'orrery:cluster-metrics';

/** The cores this process may use: the CPU affinity, capped by a cgroup v2 CPU quota. */
export function availableCores(): number {
  let cores = availableParallelism();
  try {
    const [quota, period] = readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(/\s+/);
    if (quota && quota !== 'max' && period) cores = Math.min(cores, Math.max(1, Math.ceil(Number(quota) / Number(period))));
  } catch {
    // No cgroup v2 CPU controller: the affinity is all there is.
  }
  return cores;
}

/** This process's identity when it is a worker of a cluster started here; undefined otherwise. */
export function workerIdentity(): WorkerIdentity | undefined {
  if (!cluster.isWorker || process.env[WORKER_ENV] === undefined) return undefined;
  return { id: Number(process.env[WORKER_ENV]), of: Number(process.env[WORKERS_ENV]) };
}

/**
 * In a worker: makes `registry` the one the primary aggregates, and returns what /metrics
 * serves there, the whole cluster's metrics, asked of the primary.
 */
export function clusterMetrics(registry: Registry): () => Promise<string> {
  AggregatorRegistry.setRegistries([registry]);
  // prom-client answers the primary's requests only once an AggregatorRegistry exists here too.
  new AggregatorRegistry();
  let next = 0;
  const waiting = new Map<number, (text: string) => void>();
  process.on('message', (msg: { type?: string; id?: number; text?: string }) => {
    if (msg?.type !== `${METRICS_REQ}:res` || msg.id === undefined) return;
    waiting.get(msg.id)?.(msg.text ?? '');
    waiting.delete(msg.id);
  });
  return () =>
    new Promise((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error('the cluster primary did not answer for its metrics'));
      }, 5_000);
      waiting.set(id, (text) => {
        clearTimeout(timer);
        resolve(text);
      });
      process.send!({ type: METRICS_REQ, id });
    });
}

/**
 * Runs the primary of a cluster of `workers` processes, each running this same command.
 * Resolves with the exit code once every worker has exited after a signal.
 */
export function runPrimary(opts: { workers: number; logger: Logger }): Promise<number> {
  const log = opts.logger.child({ component: 'cluster' });
  const aggregator = new AggregatorRegistry();
  const byId = new Map<number, Worker>();
  let stopping = false;
  let failed = false;

  const fork = (id: number) => {
    const worker = cluster.fork({ [WORKER_ENV]: String(id), [WORKERS_ENV]: String(opts.workers) });
    byId.set(id, worker);
    worker.on('message', (msg: { type?: string; id?: number }) => {
      if (msg?.type !== METRICS_REQ) return;
      aggregator.clusterMetrics().then(
        (text) => worker.send({ type: `${METRICS_REQ}:res`, id: msg.id, text }),
        (err: unknown) => {
          log.warn({ err }, 'could not gather the workers\' metrics');
          worker.send({ type: `${METRICS_REQ}:res`, id: msg.id, text: '' });
        },
      );
    });
    worker.on('exit', (code, signal) => {
      byId.delete(id);
      if (stopping) {
        if (code !== 0) failed = true;
        return;
      }
      // A worker that dies on its own is replaced; its spool is its id's, so the new one replays it.
      log.error({ worker: id, code, signal }, 'worker exited: starting another');
      setTimeout(() => !stopping && fork(id), 1_000).unref();
    });
  };

  for (let id = 0; id < opts.workers; id++) fork(id);
  log.info({ workers: opts.workers, cores: availableCores() }, `started ${opts.workers} workers sharing the port`);

  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping: each worker drains its in-flight work');
      // SIGINT from a terminal reaches the workers too (one process group); SIGTERM, as a
      // supervisor sends it to this process alone, is passed on.
      if (signal === 'SIGTERM') for (const w of byId.values()) w.process.kill('SIGTERM');
      const done = () => {
        if (byId.size > 0) return;
        log.info(failed ? 'stopped: a worker did not stop cleanly' : 'stopped cleanly');
        resolve(failed ? 1 : 0);
      };
      cluster.on('exit', done);
      done();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
