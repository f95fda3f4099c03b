import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Bench settings, from env with quick defaults (the whole suite takes a few minutes).
 * Every figure is a ratio against a baseline measured in the same run, so the defaults
 * favour several short runs over one long one.
 */
export interface Settings {
  /** Seconds per measured run of a throughput scenario (BENCH_DURATION_S). */
  durationS: number;
  /** Measured runs per scenario; the median and min–max are reported (BENCH_RUNS). */
  runs: number;
  /** Seconds of unmeasured load before the first run of each target (BENCH_WARMUP_S). */
  warmupS: number;
  /** HTTP connections of the load generator (BENCH_CONNECTIONS). */
  connections: number;
  /** Events per /v1/batch request (BENCH_BATCH_SIZE). */
  batchSize: number;
  /** Partitions of every topic the bench creates (BENCH_PARTITIONS). */
  partitions: number;
  /** Events preloaded for one router run (BENCH_ROUTER_EVENTS). */
  routerEvents: number;
  /** Events waiting for the router in router-backlog (BENCH_BACKLOG_EVENTS). */
  backlogEvents: number;
  /** Events preloaded for one sink run (BENCH_SINK_EVENTS). */
  sinkEvents: number;
  /** Target rate of the end-to-end scenario, events/s (BENCH_E2E_RATE). */
  e2eRate: number;
  /** Seconds of load per end-to-end run (BENCH_E2E_DURATION_S). */
  e2eDurationS: number;
  /** Upper bound on any one wait (a drain, a delivery), seconds (BENCH_TIMEOUT_S). */
  timeoutS: number;
  /** Seconds of ingest-batch load per run of the memory scenario (BENCH_MEMORY_LOAD_S). */
  memoryLoadS: number;
  /**
   * Node flags of every orrery child (BENCH_NODE_OPTIONS): by default those of bin/node-flags,
   * which ./orrery and `npm start` pass, so that the bench measures what a user runs.
   */
  nodeOptions: string;
  /** Write a CPU profile of every orrery child (BENCH_PROFILE=1). */
  profile: boolean;
  /** Leave the bench's Kafka topics in place (BENCH_KEEP_TOPICS=1). */
  keepTopics: boolean;
}

function num(env: NodeJS.ProcessEnv, name: string, fallback: number, min = 1): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name}=${raw}: expected a number ≥ ${min}`);
  return n;
}

/** The flags of bin/node-flags (comments left out), as ./orrery passes them to node. */
export function launcherFlags(): string {
  const file = fileURLToPath(new URL('../../bin/node-flags', import.meta.url));
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
    .join(' ');
}

const flag = (v: string | undefined) => v !== undefined && v !== '' && v !== '0' && v !== 'false';

export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  return {
    durationS: num(env, 'BENCH_DURATION_S', 5),
    runs: Math.round(num(env, 'BENCH_RUNS', 3)),
    warmupS: num(env, 'BENCH_WARMUP_S', 2, 0),
    connections: Math.round(num(env, 'BENCH_CONNECTIONS', 50)),
    batchSize: Math.round(num(env, 'BENCH_BATCH_SIZE', 100)),
    partitions: Math.round(num(env, 'BENCH_PARTITIONS', 6)),
    routerEvents: Math.round(num(env, 'BENCH_ROUTER_EVENTS', 60_000, 100)),
    backlogEvents: Math.round(num(env, 'BENCH_BACKLOG_EVENTS', 1_000_000, 100)),
    sinkEvents: Math.round(num(env, 'BENCH_SINK_EVENTS', 10_000, 100)),
    e2eRate: num(env, 'BENCH_E2E_RATE', 1_000),
    e2eDurationS: num(env, 'BENCH_E2E_DURATION_S', 10),
    timeoutS: num(env, 'BENCH_TIMEOUT_S', 120),
    memoryLoadS: num(env, 'BENCH_MEMORY_LOAD_S', 10),
    nodeOptions: (env.BENCH_NODE_OPTIONS ?? launcherFlags()).trim(),
    profile: flag(env.BENCH_PROFILE),
    keepTopics: flag(env.BENCH_KEEP_TOPICS),
  };
}
