import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { startOrrery, type OrreryProcess } from '../../test/helpers/process.ts';
import { DESTINATION_ID, SOURCE_ID, WRITE_KEY } from './events.ts';
import type { BenchContext } from './context.ts';

/**
 * Orrery under test: `orrery start [component]` as a real child process (the CLI, as a
 * user runs it; test/helpers/process.ts), on its own topic prefix, consumer groups and
 * spool. With BENCH_PROFILE=1 each child writes a V8 CPU profile on exit (NODE_OPTIONS).
 */

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/;

/** DATABASE_URL when it points at this machine (the bench loads nothing else). */
export function localDatabase(url: string | undefined = process.env.DATABASE_URL): string | undefined {
  if (!url || !URL.canParse(url)) return undefined;
  return LOOPBACK.test(new URL(url).hostname) ? url : undefined;
}

/** Drops a schema the bench made (the processes that used it have stopped). */
export async function dropSchema(databaseUrl: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  await client.query(`drop schema if exists "${schema}" cascade`).finally(() => client.end());
}

export interface OrreryOptions {
  /** Components to start; all of them when empty. */
  components: string[];
  prefix: string;
  /** Webhook URL of the destination; a placeholder when the scenario runs no sinks. */
  webhookUrl?: string;
  /** Distinguishes this process's consumer groups (router and sinks). */
  groupTag: string;
  /** Name of the CPU profile folder, when profiling. */
  label: string;
  env?: Record<string, string>;
  /** Node flags for this process, after BENCH_NODE_OPTIONS (e.g. the memory probe's --import). */
  nodeOptions?: string[];
}

export interface RunningOrrery {
  url: string;
  pid: number;
  proc: OrreryProcess;
  stop(): Promise<void>;
}

/**
 * The control plane the bench runs with. The source's rate limit is far above any load
 * here (the default, 5,000 events/s, would otherwise be what ingest-batch measures), and
 * the dedup windows are 10 minutes so that the bench's keys leave Redis soon after; the
 * Redis work per event is the same as with the 24 h default.
 */
export function writeConfig(dir: string, webhookUrl: string): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'orrery.yaml');
  writeFileSync(
    file,
    `# written by bench/lib/orrery.ts
router: { dedupWindowMs: 600000 }
sinks: { dedupWindowMs: 600000 }
sources:
  - id: ${SOURCE_ID}
    writeKeys: [${WRITE_KEY}]
    rateLimit: { eventsPerSecond: 100000000, burst: 100000000 }
destinations:
  - { id: ${DESTINATION_ID}, type: webhook, url: "${webhookUrl}", allowPrivateNetwork: true }
routes:
  - { source: ${SOURCE_ID}, destination: ${DESTINATION_ID} }
`,
  );
  return file;
}

export async function startOrreryProcess(ctx: BenchContext, o: OrreryOptions): Promise<RunningOrrery> {
  const dir = join(ctx.tmpDir, `${o.label}-${o.groupTag}`);
  const config = writeConfig(dir, o.webhookUrl ?? 'http://127.0.0.1:9/unused');
  const databaseUrl = localDatabase();
  const schema = `bench_${o.prefix}_${o.label}_${o.groupTag}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  const env: Record<string, string> = {
    ORRERY_CONFIG: config,
    LOG_LEVEL: 'warn',
    KAFKA_BROKERS: ctx.services.kafkaBrokers,
    KAFKA_TOPIC_PREFIX: o.prefix,
    KAFKA_TOPIC_PARTITIONS: String(ctx.settings.partitions),
    REDIS_URL: ctx.services.redisUrl,
    ROUTER_GROUP: `${o.prefix}.router.${o.groupTag}`,
    SINKS_GROUP_PREFIX: `${o.prefix}.sink.${o.groupTag}`,
    INGEST_SPOOL_DIR: join(dir, 'spool'),
    ORRERY_DATA_DIR: join(dir, 'data'),
    // The store is what production runs: the machine's Postgres, a schema per process
    // (dropped at stop), with the control plane seeded from the config file. Without a
    // local DATABASE_URL each process opens the embedded SQLite store in its data dir instead
    // (its start-up and memory then count). The store is on no hot path measured here
    // (dead letters only, none expected).
    DATABASE_URL: databaseUrl ?? '',
    DATABASE_SCHEMA: schema,
    KAFKA_CLIENT: ctx.kafkaClient ?? 'kafkajs',
    ...o.env,
  };
  // BENCH_NODE_OPTIONS go on node's command line, as ./orrery puts bin/node-flags there: V8
  // flags that NODE_OPTIONS refuses (--heap-growing-percent, --optimize-for-size) can be
  // measured too. Preloads and profiling stay in NODE_OPTIONS.
  const nodeArgs = ctx.settings.nodeOptions.split(/\s+/).filter(Boolean);
  const nodeOptions = [process.env.NODE_OPTIONS ?? '', ...(o.nodeOptions ?? [])];
  if (ctx.settings.profile) {
    const profDir = join(ctx.profileDir, ctx.scenario, o.label);
    mkdirSync(profDir, { recursive: true });
    nodeOptions.push(`--cpu-prof --cpu-prof-dir=${profDir}`);
  }
  const joined = nodeOptions.filter(Boolean).join(' ');
  if (joined) env.NODE_OPTIONS = joined;
  const proc = await startOrrery(['start', ...o.components], env, { nodeArgs });
  const child = proc.child;
  return {
    url: proc.url,
    pid: child.pid!,
    proc,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      // Orrery drains on SIGTERM (30 s at most); past that, and a little more, it is killed.
      const kill = setTimeout(() => child.kill('SIGKILL'), 40_000);
      await exited;
      clearTimeout(kill);
      if (databaseUrl) await dropSchema(databaseUrl, schema).catch((err: unknown) => ctx.log(`  ${o.label}: could not drop schema ${schema}: ${(err as Error).message}`));
      const errors = proc.logs.filter((l) => typeof l.level === 'number' && l.level >= 50);
      if (errors.length > 0) ctx.log(`  ${o.label}: ${errors.length} error log line(s), first: ${JSON.stringify(errors[0]).slice(0, 400)}`);
    },
  };
}

/**
 * Peak and current resident set size of a process, in MiB (Linux /proc), and what the
 * current one is: anonymous memory (heap, buffers, malloc) and mapped files (node's own code).
 */
export function memoryOf(pid: number): { hwmMiB: number; rssMiB: number; anonMiB: number; fileMiB: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
    return { hwmMiB: kb('VmHWM') / 1024, rssMiB: kb('VmRSS') / 1024, anonMiB: kb('RssAnon') / 1024, fileMiB: kb('RssFile') / 1024 };
  } catch {
    return undefined;
  }
}

/**
 * Resident MiB of a process by kind of mapping (/proc/<pid>/smaps): `file` (node's code and
 * other mapped files), `brk` (the malloc heap, `[heap]`), `anon` (anonymous mappings: V8's
 * heap pages, large malloc blocks, WebAssembly memory, thread stacks), `other`.
 */
export function mappingsOf(pid: number): Record<'file' | 'brk' | 'anon' | 'other', number> | undefined {
  let smaps: string;
  try {
    smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return undefined;
  }
  const out = { file: 0, brk: 0, anon: 0, other: 0 };
  let kind: keyof typeof out = 'other';
  for (const line of smaps.split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const name = head[1]!;
      kind = name.startsWith('/') ? 'file' : name === '[heap]' ? 'brk' : name === '' || name.startsWith('[anon') ? 'anon' : 'other';
    } else if (line.startsWith('Rss:')) {
      out[kind] += Number(/(\d+)/.exec(line)?.[1] ?? 0) / 1024;
    }
  }
  return out;
}
