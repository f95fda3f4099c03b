import { childScript, startChild, type Child } from '../lib/child.ts';
import type { BenchContext, Scenario } from '../lib/context.ts';
import { DESTINATION_ID, routedRecords } from '../lib/events.ts';
import { BenchKafka } from '../lib/kafka.ts';
import { startOrreryProcess, type RunningOrrery } from '../lib/orrery.ts';
import { row } from '../lib/report.ts';
import { pollUntil, summarize } from '../lib/stats.ts';
import { topicNames } from '../../core/topics.ts';

interface ReceiverStats {
  requests: number;
  events: number;
  first: number;
  last: number;
  maxInflight: number;
  connections: number;
}

interface Measured {
  eventsPerSec: number;
  ms: number;
  events: number;
  /** Connections the sender used: its concurrency. */
  connections: number;
}

/** Events/s as the receiver saw them: first arrival to last, so start-up is not counted. */
function rateOf(st: ReceiverStats): Measured {
  const ms = st.last - st.first;
  return { eventsPerSec: ms > 0 ? (st.events - 1) / (ms / 1000) : Number.NaN, ms, events: st.events, connections: st.connections };
}

/**
 * The webhook sink: N routed events preloaded on a destination topic, then `orrery start
 * sinks` with a webhook destination (allowPrivateNetwork) posting to a local receiver
 * (bench/children/receiver.ts, its own process), timed until the receiver has all N; and a
 * bare `fetch` loop (bench/children/fetch-loop.ts) posting the same events, with the same
 * headers, to the same receiver at the same concurrency. That concurrency is measured:
 * the connections Orrery's fetch opened to the receiver during the warm-up round (a
 * keep-alive pool opens one per request it has open at once).
 */
export const scenario: Scenario = {
  name: 'sink-webhook',
  description: 'events/s delivered by the webhook sink vs a bare fetch loop to the same receiver',
  async run(ctx: BenchContext) {
    const s = ctx.settings;
    const kafka = new BenchKafka(ctx.services.kafkaBrokers);
    const timeoutMs = s.timeoutS * 1000;
    let receiver: Child<{ url: string }> | undefined;
    let poster: Child | undefined;
    const ours: Measured[] = [];
    const base: Measured[] = [];
    try {
      receiver = await startChild<{ url: string }>(childScript('receiver'), { record: false });
      poster = await startChild(childScript('fetch-loop'), { url: receiver.ready.url });
      const rcv = receiver;
      const stats = () => rcv.request<ReceiverStats>({ cmd: 'stats' });
      const waitAll = (n: number, what: string) => pollUntil(async () => {
        const st = await stats();
        return st.events >= n ? st : undefined;
      }, what, timeoutMs, 50);

      const runOrrery = async (label: string, n: number): Promise<Measured> => {
        const prefix = `bench-${ctx.runId}-sink-${label}`;
        const topics = topicNames(prefix);
        const dest = topics.destination(DESTINATION_ID);
        await kafka.createTopics([topics.raw, topics.dlq, dest], s.partitions);
        await kafka.preload(dest, n, (from, to) => routedRecords(`${ctx.runId}-${label}`, from, to));
        await rcv.request({ cmd: 'reset' });
        let sinks: RunningOrrery | undefined;
        try {
          sinks = await startOrreryProcess(ctx, { components: ['sinks'], prefix, groupTag: label, label: 'sinks', webhookUrl: rcv.ready.url });
          return rateOf(await waitAll(n, `${n} events delivered by orrery (${label})`));
        } finally {
          await sinks?.stop();
          await kafka.cleanup(s.keepTopics).catch(() => undefined);
          await kafka.deleteGroups(prefix).catch(() => undefined);
        }
      };
      const runBaseline = async (label: string, n: number, concurrency: number): Promise<Measured> => {
        await rcv.request({ cmd: 'reset' });
        const r = await poster!.request<{ ms: number; errors: number }>({ cmd: 'run', tag: `${ctx.runId}-${label}`, count: n, concurrency }, timeoutMs);
        if (r.errors > 0) ctx.log(`  fetch loop: ${r.errors} errors`);
        return rateOf(await waitAll(n, `${n} events posted by the fetch loop (${label})`));
      };

      const warm = await runOrrery('warmup', Math.min(5_000, s.sinkEvents));
      const concurrency = Math.max(1, warm.connections);
      const warmBase = await runBaseline('warmup', Math.min(5_000, s.sinkEvents), concurrency);
      ctx.log(`  warm-up: orrery ${Math.round(warm.eventsPerSec)} events/s (over ${warm.connections} connection(s)), fetch loop ${Math.round(warmBase.eventsPerSec)} events/s at concurrency ${concurrency}`);
      for (let run = 0; run < s.runs; run++) {
        const label = `r${run + 1}`;
        let o: Measured;
        let b: Measured;
        if (run % 2 === 0) {
          o = await runOrrery(label, s.sinkEvents);
          b = await runBaseline(label, s.sinkEvents, concurrency);
        } else {
          b = await runBaseline(label, s.sinkEvents, concurrency);
          o = await runOrrery(label, s.sinkEvents);
        }
        ours.push(o);
        base.push(b);
        ctx.log(`  run ${run + 1}/${s.runs}: orrery ${Math.round(o.eventsPerSec)} events/s (${o.connections} connection(s)), fetch loop ${Math.round(b.eventsPerSec)} events/s`);
      }
      const notes: string[] = [];
      for (const [i, o] of ours.entries()) if (o.events !== s.sinkEvents) notes.push(`run ${i + 1}: the receiver got ${o.events} events from orrery for ${s.sinkEvents}`);
      return {
        metrics: [
          row('events/s', 'events/s', summarize(ours.map((m) => m.eventsPerSec)), { name: `fetch loop ×${concurrency}`, summary: summarize(base.map((m) => m.eventsPerSec)) }, { on: 'ratio', op: '>=', value: 0.7 }),
        ],
        settings: { events: s.sinkEvents, partitions: s.partitions, runs: s.runs, webhookBatch: false, baselineConcurrency: concurrency, orreryConnections: ours.map((o) => o.connections), measuredFrom: 'first receipt to last receipt at the receiver' },
        runs: [...ours.map((m, i) => ({ target: 'orrery', run: i + 1, ...m })), ...base.map((m, i) => ({ target: 'fetch-loop', run: i + 1, ...m }))],
        notes,
      };
    } finally {
      await poster?.stop();
      await receiver?.stop();
      await kafka.cleanup(s.keepTopics).catch(() => undefined);
      await kafka.close();
    }
  },
};
