import { autocannon } from '../lib/autocannon.ts';
import { childScript, startChild, type Child } from '../lib/child.ts';
import type { BenchContext, Scenario } from '../lib/context.ts';
import { AUTH_HEADER, batchBody } from '../lib/events.ts';
import { BenchKafka } from '../lib/kafka.ts';
import { memoryOf, startOrreryProcess, type RunningOrrery } from '../lib/orrery.ts';
import { row } from '../lib/report.ts';
import { summarize } from '../lib/stats.ts';
import { topicNames } from '../../core/topics.ts';

const COMPONENTS = ['ingest', 'router', 'sinks'] as const;

/**
 * Peak RSS (VmHWM in /proc/<pid>/status) of the three components, each its own
 * `orrery start <component>` process, under the ingest-batch load (BENCH_DURATION_S ×
 * BENCH_RUNS seconds) with the router and a webhook sink working behind it. Report only.
 */
export const scenario: Scenario = {
  name: 'memory',
  description: 'peak RSS of ingest, router and sinks processes under the ingest-batch load',
  async run(ctx: BenchContext) {
    const s = ctx.settings;
    const kafka = new BenchKafka(ctx.services.kafkaBrokers);
    const prefix = `bench-${ctx.runId}-mem`;
    const procs: Partial<Record<(typeof COMPONENTS)[number], RunningOrrery>> = {};
    let receiver: Child<{ url: string }> | undefined;
    try {
      receiver = await startChild<{ url: string }>(childScript('receiver'), { record: false });
      const topics = topicNames(prefix);
      await kafka.createTopics([topics.raw, topics.dlq, topics.destination('hook')], s.partitions);
      for (const c of COMPONENTS) {
        procs[c] = await startOrreryProcess(ctx, { components: [c], prefix, groupTag: 'mem', label: c, webhookUrl: receiver.ready.url });
      }
      const idle = Object.fromEntries(COMPONENTS.map((c) => [c, memoryOf(procs[c]!.pid)]));
      const seconds = s.durationS * s.runs;
      const samples: Record<string, number[]> = { ingest: [], router: [], sinks: [] };
      const sampler = setInterval(() => {
        for (const c of COMPONENTS) {
          const m = memoryOf(procs[c]!.pid);
          if (m) samples[c]!.push(m.rssMiB);
        }
      }, 500);
      const load = await autocannon({
        url: `${procs.ingest!.url}/v1/batch`,
        body: batchBody(s.batchSize),
        headers: { 'content-type': 'application/json', authorization: AUTH_HEADER },
        connections: s.connections,
        seconds,
        dir: ctx.tmpDir,
      });
      clearInterval(sampler);
      const peak = Object.fromEntries(COMPONENTS.map((c) => [c, memoryOf(procs[c]!.pid)]));
      const delivered = (await receiver.request<{ events: number }>({ cmd: 'stats' })).events;
      const counts = { ingested: await kafka.count(topics.raw), routed: await kafka.count(topics.destination('hook')), delivered };
      ctx.log(`  ${Math.round(load.okPerSec * s.batchSize)} events/s into ingest for ${seconds} s; ${JSON.stringify(counts)}`);
      for (const c of COMPONENTS) ctx.log(`  ${c}: idle ${idle[c]?.rssMiB.toFixed(0)} MiB, peak (VmHWM) ${peak[c]?.hwmMiB.toFixed(0)} MiB`);
      return {
        // The "baseline" column is the same process idle, before the load: the ratio is the growth under load.
        metrics: COMPONENTS.map((c) =>
          row(`${c} peak RSS (VmHWM)`, 'MiB', summarize([peak[c]?.hwmMiB ?? Number.NaN]), { name: 'idle RSS', summary: summarize([idle[c]?.rssMiB ?? Number.NaN]) }),
        ),
        settings: { seconds, connections: s.connections, batchSize: s.batchSize, partitions: s.partitions, topicPrefix: prefix, ingestEventsPerSec: load.okPerSec * s.batchSize, ...counts },
        runs: COMPONENTS.map((c) => ({ component: c, idle: idle[c], peak: peak[c], rssSamplesMiB: samples[c]!.map((x) => Math.round(x)) })),
        notes: ["Orrery's topics have the broker's defaults (max.message.bytes 1 MiB)"],
      };
    } finally {
      for (const c of COMPONENTS) await procs[c]?.stop();
      await receiver?.stop();
      await kafka.cleanup(s.keepTopics).catch(() => undefined);
      await kafka.deleteGroups(prefix).catch(() => undefined);
      await kafka.close();
    }
  },
};
