import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { autocannon, type LoadResult } from '../lib/autocannon.ts';
import { childScript, startChild, type Child } from '../lib/child.ts';
import type { BenchContext, Scenario } from '../lib/context.ts';
import { AUTH_HEADER, batchBody } from '../lib/events.ts';
import { BenchKafka } from '../lib/kafka.ts';
import { mappingsOf, memoryOf, startOrreryProcess, type OrreryOptions, type RunningOrrery } from '../lib/orrery.ts';
import { row, type MetricRow } from '../lib/report.ts';
import { pollUntil, sleep, summarize } from '../lib/stats.ts';
import { topicNames } from '../../core/topics.ts';

const LOADED = ['ingest', 'router', 'sinks'] as const;
type Loaded = (typeof LOADED)[number];

/** Issue #18's table, MiB of resident memory. gitops is measured idle only. */
export const MEMORY_TARGETS = { idle: 100, peak: 200, gitopsIdle: 150 } as const;

/** How long a process is left alone after /healthz answers before "idle" is read. */
const SETTLE_MS = 3_000;
const PROBE = fileURLToPath(new URL('../lib/mem-probe.mjs', import.meta.url));
const GITOPS_ADMIN_TOKEN = 'bench-admin-token-0001-abcdef';

interface ProbeSample {
  /** CPU seconds (user + system) the process has used so far. */
  cpuS: number;
  rssMiB: number;
  heapTotalMiB: number;
  heapUsedMiB: number;
  externalMiB: number;
  arrayBuffersMiB: number;
  spaceSizeMiB: Record<string, number>;
}

interface Reading {
  /** VmRSS now and VmHWM (the highest RSS since the start), MiB. */
  rssMiB: number;
  hwmMiB: number;
  /** Of VmRSS now: anonymous memory and mapped files (node's code). */
  anonMiB: number;
  fileMiB: number;
  /** VmRSS now by kind of mapping (file, malloc's brk heap, anonymous, other), MiB. */
  mappingsMiB?: ReturnType<typeof mappingsOf>;
  /** process.memoryUsage() and V8's spaces inside the process: now, and at its highest RSS. */
  now?: ProbeSample;
  atPeak?: ProbeSample;
}

interface Probed {
  proc: RunningOrrery;
  probeFile: string;
}

async function startProbed(ctx: BenchContext, o: OrreryOptions): Promise<Probed> {
  const probeFile = join(ctx.tmpDir, `mem-probe-${o.label}-${o.groupTag}.json`);
  writeFileSync(probeFile, '{}');
  const proc = await startOrreryProcess(ctx, { ...o, nodeOptions: [`--import=${PROBE}`], env: { ...o.env, ORRERY_MEM_PROBE: probeFile } });
  return { proc, probeFile };
}

function read(p: Probed): Reading {
  const m = memoryOf(p.proc.pid);
  if (!m) throw new Error(`no /proc/${p.proc.pid}/status: did the process exit?`);
  let probe: { now?: ProbeSample; peak?: ProbeSample } = {};
  try {
    probe = JSON.parse(readFileSync(p.probeFile, 'utf8')) as typeof probe;
  } catch {
    // Not written yet: /proc has the figures that count.
  }
  return { ...m, mappingsMiB: mappingsOf(p.proc.pid), ...(probe.now ? { now: probe.now } : {}), ...(probe.peak ? { atPeak: probe.peak } : {}) };
}

const brief = (s: ProbeSample | undefined) =>
  s ? `rss ${s.rssMiB} = heap ${s.heapTotalMiB} (used ${s.heapUsedMiB}; new space ${s.spaceSizeMiB.new_space ?? '?'}) + external ${s.externalMiB} (arrayBuffers ${s.arrayBuffersMiB}) + other` : 'no probe sample';
const mapped = (r: Reading) => (r.mappingsMiB ? Object.entries(r.mappingsMiB).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ') : '?');

interface LoadedRun {
  run: number;
  idle: Record<Loaded, Reading>;
  peak: Record<Loaded, Reading>;
  load: LoadResult;
  eventsPerSec: number;
  counts: { ingested: number; routed: number; delivered: number };
  drainMs: number;
  drained: boolean;
}

/**
 * Resident memory of each `orrery start <component>` process, against issue #18's targets:
 * ingest, router and sinks idle (VmRSS once started and settled) and at their peak (VmHWM)
 * under the ingest-batch load with the router and a webhook sink working behind it, until
 * the sink has delivered everything ingested; gitops idle (its embedded default, after the
 * first sync). Fresh processes each run; a preloaded probe (bench/lib/mem-probe.mjs) says
 * what the resident memory was made of at the peak.
 */
export const scenario: Scenario = {
  name: 'memory',
  description: 'idle and peak RSS (VmHWM) of ingest, router and sinks under the ingest-batch load, and of gitops idle, against #18 targets',
  async run(ctx: BenchContext) {
    const s = ctx.settings;
    const kafka = new BenchKafka(ctx.services.kafkaBrokers);
    const body = batchBody(s.batchSize);
    const runs: LoadedRun[] = [];
    const gitops: Reading[] = [];
    const notes: string[] = [];
    let receiver: Child<{ url: string }> | undefined;
    try {
      receiver = await startChild<{ url: string }>(childScript('receiver'), { record: false });
      for (let run = 1; run <= s.runs; run++) {
        gitops.push(await gitopsIdle(ctx, run));
        const r = await loadedRun(ctx, kafka, receiver, body, run);
        runs.push(r);
        ctx.log(`  run ${run}/${s.runs}: ${Math.round(r.eventsPerSec)} events/s into ingest for ${s.memoryLoadS} s, drained in ${Math.round(r.drainMs)} ms ${JSON.stringify(r.counts)}; gitops idle ${gitops.at(-1)!.rssMiB.toFixed(0)} MiB`);
        for (const c of LOADED) {
          ctx.log(`    ${c}: idle ${r.idle[c].rssMiB.toFixed(0)} MiB (hwm ${r.idle[c].hwmMiB.toFixed(0)}; ${mapped(r.idle[c])}), peak ${r.peak[c].hwmMiB.toFixed(0)} MiB; at peak: ${brief(r.peak[c].atPeak)}; after the drain: ${mapped(r.peak[c])}`);
        }
        if (!r.drained) notes.push(`run ${run}: the sink delivered ${r.counts.delivered} of ${r.counts.ingested} events within ${s.timeoutS} s`);
        const bad = r.load.non2xx + r.load.errors + r.load.timeouts;
        if (bad > 0) notes.push(`run ${run}: ingest answered ${bad} requests with a non-2xx, an error or a timeout`);
      }
      const mib = (f: (r: LoadedRun) => number) => summarize(runs.map(f));
      const metrics: MetricRow[] = [];
      for (const c of LOADED) {
        const idle = mib((r) => r.idle[c].rssMiB);
        metrics.push(row(`${c} idle RSS`, 'MiB', idle, undefined, { on: 'orrery', op: '<', value: MEMORY_TARGETS.idle }));
        // The "baseline" is the same process idle: the ratio is the growth under load.
        metrics.push(row(`${c} peak RSS (VmHWM) under load`, 'MiB', mib((r) => r.peak[c].hwmMiB), { name: 'idle', summary: idle }, { on: 'orrery', op: '<', value: MEMORY_TARGETS.peak }));
      }
      metrics.push(row('gitops idle RSS', 'MiB', summarize(gitops.map((g) => g.rssMiB)), undefined, { on: 'orrery', op: '<', value: MEMORY_TARGETS.gitopsIdle }));
      metrics.push(row('load: events/s into ingest', 'events/s', mib((r) => r.eventsPerSec)));
      // CPU per event, from idle to the end of the drain: what a memory lever costs in work,
      // steadier than a rate on a shared machine.
      for (const c of LOADED) metrics.push(row(`${c} CPU per 1,000 events`, 'ms', mib((r) => ((r.peak[c].now?.cpuS ?? Number.NaN) - (r.idle[c].now?.cpuS ?? Number.NaN)) * 1e6 / r.counts.ingested)));
      return {
        metrics,
        settings: {
          loadSeconds: s.memoryLoadS,
          settleMs: SETTLE_MS,
          connections: s.connections,
          batchSize: s.batchSize,
          partitions: s.partitions,
          kafkaClient: ctx.kafkaClient ?? 'kafkajs',
          nodeOptions: s.nodeOptions,
          targetsMiB: MEMORY_TARGETS,
          idleMeans: `VmRSS ${SETTLE_MS} ms after /healthz answers (gitops: after its first sync)`,
          peakMeans: 'VmHWM after the load and the drain (the sink has delivered every event ingest took)',
        },
        runs: runs.map((r, i) => ({ ...r, gitopsIdle: gitops[i] })),
        notes,
      };
    } finally {
      await receiver?.stop();
      await kafka.close();
    }
  },
};

async function loadedRun(ctx: BenchContext, kafka: BenchKafka, receiver: Child<{ url: string }>, body: string, run: number): Promise<LoadedRun> {
  const s = ctx.settings;
  const prefix = `bench-${ctx.runId}-mem${run}`;
  const topics = topicNames(prefix);
  const procs: Partial<Record<Loaded, Probed>> = {};
  try {
    await kafka.createTopics([topics.raw, topics.dlq, topics.destination('hook')], s.partitions);
    await receiver.request({ cmd: 'reset' });
    for (const c of LOADED) procs[c] = await startProbed(ctx, { components: [c], prefix, groupTag: `mem${run}`, label: c, webhookUrl: receiver.ready.url });
    await sleep(SETTLE_MS);
    const all = procs as Record<Loaded, Probed>;
    const idle = Object.fromEntries(LOADED.map((c) => [c, read(all[c])])) as Record<Loaded, Reading>;
    const load = await autocannon({
      url: `${all.ingest.proc.url}/v1/batch`,
      body,
      headers: { 'content-type': 'application/json', authorization: AUTH_HEADER },
      connections: s.connections,
      seconds: s.memoryLoadS,
      dir: ctx.tmpDir,
    });
    const drainStart = Date.now();
    const delivered = async () => (await receiver.request<{ events: number }>({ cmd: 'stats' })).events;
    // Until the sink has delivered all that reached the raw topic (re-counted: the last
    // requests' events may land after autocannon stops).
    const drained = await pollUntil(async () => ((await delivered()) >= (await kafka.count(topics.raw)) ? true : undefined), 'the sink to deliver everything', s.timeoutS * 1000, 500).catch(() => false);
    const drainMs = Date.now() - drainStart;
    // Everything the probes sampled up to now (they write every 200 ms).
    await sleep(300);
    const peak = Object.fromEntries(LOADED.map((c) => [c, read(all[c])])) as Record<Loaded, Reading>;
    const counts = { ingested: await kafka.count(topics.raw), routed: await kafka.count(topics.destination('hook')), delivered: await delivered() };
    return { run, idle, peak, load, eventsPerSec: load.okPerSec * s.batchSize, counts, drainMs, drained };
  } finally {
    for (const c of LOADED) await procs[c]?.proc.stop();
    await kafka.cleanup(s.keepTopics).catch(() => undefined);
    await kafka.deleteGroups(prefix).catch(() => undefined);
  }
}

/**
 * `orrery start gitops` as a user starts it first: no gitops section, so its embedded default
 * (a local manifests repository, plan mode); the bench's store (Postgres) and no Kafka.
 * Idle once its first sync is done and a few seconds have passed.
 */
async function gitopsIdle(ctx: BenchContext, run: number): Promise<Reading> {
  let p: Probed | undefined;
  try {
    p = await startProbed(ctx, {
      components: ['gitops'],
      prefix: `bench-${ctx.runId}-memgitops${run}`,
      groupTag: `mem${run}`,
      label: 'gitops',
      env: { PILOT_ADMIN_TOKEN: GITOPS_ADMIN_TOKEN, KAFKA_BROKERS: '', REDIS_URL: '' },
    });
    const url = p.proc.url;
    await pollUntil(
      async () => {
        const res = await fetch(`${url}/sync/status`, { headers: { authorization: `Bearer ${GITOPS_ADMIN_TOKEN}` } });
        const status = (await res.json()) as { conditions?: Array<{ reason: string }> };
        return status.conditions && status.conditions.length > 0 ? true : undefined;
      },
      'gitops: the first sync',
      ctx.settings.timeoutS * 1000,
      200,
    );
    await sleep(SETTLE_MS);
    return read(p);
  } finally {
    await p?.proc.stop();
  }
}
