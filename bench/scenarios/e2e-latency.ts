import { childScript, startChild, type Child } from '../lib/child.ts';
import type { BenchContext, Scenario } from '../lib/context.ts';
import { BenchKafka } from '../lib/kafka.ts';
import { startOrreryProcess, type RunningOrrery } from '../lib/orrery.ts';
import { row } from '../lib/report.ts';
import { percentile, pollUntil, sleep, summarize } from '../lib/stats.ts';
import { topicNames } from '../../core/topics.ts';

interface LoadRun {
  total: number;
  sent: number;
  ok: number;
  sendSeconds: number;
  sendT: number[];
  ackT: number[];
  statuses: number[];
}

interface Measured {
  heldRate: number;
  acked: number;
  delivered: number;
  missing: number;
  p50: number;
  p99: number;
  max: number;
  sendToReceiptP50: number;
  sendToReceiptP99: number;
  ingestP50: number;
  ingestP99: number;
  /** Where the time goes, from the Kafka timestamps of each event on the raw and destination topics. */
  stages: {
    sendToRaw: { p50: number; p99: number };
    rawToDest: { p50: number; p99: number };
    destToReceipt: { p50: number; p99: number };
    events: number;
  };
}

/**
 * End-to-end latency: ingest, router and sinks as three `orrery start <component>`
 * processes, as production runs them (one process is one core: at 1,000 events/s the three
 * stages together need more than one), with a webhook destination to a local receiver; a load generator (bench/children/e2e-load.ts)
 * posts /v1/track at a fixed rate with its send time in the event's properties, and notes
 * when each 2xx came back; the receiver notes when each messageId arrived. Latency is
 * receipt − 2xx, per event. No baseline: the target is absolute.
 */
export const scenario: Scenario = {
  name: 'e2e-latency',
  description: 'p50/p99 from the ingest 2xx to receipt at the webhook, at a fixed rate',
  async run(ctx: BenchContext) {
    const s = ctx.settings;
    const kafka = new BenchKafka(ctx.services.kafkaBrokers);
    const prefix = `bench-${ctx.runId}-e2e`;
    let receiver: Child<{ url: string }> | undefined;
    let loader: Child | undefined;
    const procs: RunningOrrery[] = [];
    const runs: Measured[] = [];
    try {
      receiver = await startChild<{ url: string }>(childScript('receiver'), { record: true });
      const rcv = receiver;
      const topics = topicNames(prefix);
      await kafka.createTopics([topics.raw, topics.dlq, topics.destination('hook')], s.partitions);
      for (const c of ['router', 'sinks', 'ingest']) {
        procs.push(await startOrreryProcess(ctx, { components: [c], prefix, groupTag: 'e2e', label: c, webhookUrl: rcv.ready.url }));
      }
      loader = await startChild(childScript('e2e-load'), { url: procs.at(-1)!.url });
      const ld = loader;

      const once = async (tag: string, seconds: number): Promise<Measured> => {
        await rcv.request({ cmd: 'reset' });
        const r = await ld.request<LoadRun>({ cmd: 'run', tag, rate: s.e2eRate, seconds }, (seconds + 60) * 1000);
        // Wait (bounded) for every acknowledged event to arrive.
        await pollUntil(
          async () => {
            const st = await rcv.request<{ events: number }>({ cmd: 'stats' });
            return st.events >= r.ok ? true : undefined;
          },
          `${r.ok} events at the receiver`,
          30_000,
          100,
        ).catch(() => undefined);
        const receipts = await rcv.request<Record<string, number>>({ cmd: 'receipts' });
        const stamps = await kafka.timestamps([topics.raw, topics.destination('hook')], `${tag}-`, r.ok, 30_000);
        const raw = stamps.get(topics.raw)!;
        const dest = stamps.get(topics.destination('hook'))!;
        const sendToRaw: number[] = [];
        const rawToDest: number[] = [];
        const destToReceipt: number[] = [];
        const lat: number[] = [];
        const fromSend: number[] = [];
        const ingest: number[] = [];
        let missing = 0;
        for (let i = 0; i < r.sent; i++) {
          const ack = r.ackT[i]!;
          if (ack < 0) continue;
          ingest.push(ack - r.sendT[i]!);
          const got = receipts[`${tag}-${i}`];
          if (got === undefined) {
            missing++;
            continue;
          }
          lat.push(got - ack);
          fromSend.push(got - r.sendT[i]!);
          const tr = raw.get(`${tag}-${i}`);
          const td = dest.get(`${tag}-${i}`);
          if (tr !== undefined && td !== undefined) {
            sendToRaw.push(tr - r.sendT[i]!);
            rawToDest.push(td - tr);
            destToReceipt.push(got - td);
          }
        }
        return {
          heldRate: r.ok / r.sendSeconds,
          acked: r.ok,
          delivered: lat.length,
          missing,
          p50: percentile(lat, 50),
          p99: percentile(lat, 99),
          max: percentile(lat, 100),
          sendToReceiptP50: percentile(fromSend, 50),
          sendToReceiptP99: percentile(fromSend, 99),
          ingestP50: percentile(ingest, 50),
          ingestP99: percentile(ingest, 99),
          stages: {
            sendToRaw: { p50: percentile(sendToRaw, 50), p99: percentile(sendToRaw, 99) },
            rawToDest: { p50: percentile(rawToDest, 50), p99: percentile(rawToDest, 99) },
            destToReceipt: { p50: percentile(destToReceipt, 50), p99: percentile(destToReceipt, 99) },
            events: sendToRaw.length,
          },
        };
      };

      if (s.warmupS > 0) {
        const w = await once(`${ctx.runId}-e2e-warm`, Math.max(2, s.warmupS));
        ctx.log(`  warm-up: ${Math.round(w.heldRate)} events/s held, p50 ${w.p50.toFixed(1)} ms, p99 ${w.p99.toFixed(1)} ms`);
        await sleep(500);
      }
      for (let run = 0; run < s.runs; run++) {
        const m = await once(`${ctx.runId}-e2e-r${run + 1}`, s.e2eDurationS);
        runs.push(m);
        ctx.log(
          `  run ${run + 1}/${s.runs}: ${Math.round(m.heldRate)} events/s held, 2xx→receipt p50 ${m.p50.toFixed(1)} ms, p99 ${m.p99.toFixed(1)} ms, max ${m.max.toFixed(1)} ms; ` +
            `ingest p99 ${m.ingestP99.toFixed(1)} ms; ${m.missing} missing`,
        );
        const st = m.stages;
        ctx.log(
          `    stages p50/p99 ms: send→raw ${st.sendToRaw.p50.toFixed(0)}/${st.sendToRaw.p99.toFixed(0)}, raw→dest (router) ${st.rawToDest.p50.toFixed(0)}/${st.rawToDest.p99.toFixed(0)}, ` +
            `dest→receipt (sinks) ${st.destToReceipt.p50.toFixed(0)}/${st.destToReceipt.p99.toFixed(0)} (${st.events} events)`,
        );
      }
      const notes: string[] = [];
      const missing = runs.reduce((n, m) => n + m.missing, 0);
      if (missing > 0) notes.push(`${missing} acknowledged events had not reached the receiver 30 s after the load (left out of the percentiles)`);
      const held = summarize(runs.map((m) => m.heldRate));
      if (held.min < s.e2eRate * 0.95) notes.push(`the rate held fell to ${Math.round(held.min)} events/s (target rate ${s.e2eRate})`);
      return {
        metrics: [
          row('2xx→receipt p50', 'ms', summarize(runs.map((m) => m.p50))),
          row('2xx→receipt p99', 'ms', summarize(runs.map((m) => m.p99)), undefined, { on: 'orrery', op: '<', value: 100 } /* issue #18's first bar (#6 had 250) */),
          row('send→receipt p99', 'ms', summarize(runs.map((m) => m.sendToReceiptP99))),
          row('stage p99: raw→dest (router)', 'ms', summarize(runs.map((m) => m.stages.rawToDest.p99))),
          row('stage p99: dest→receipt (sinks)', 'ms', summarize(runs.map((m) => m.stages.destToReceipt.p99))),
          row('rate held', 'events/s', held),
        ],
        settings: { rate: s.e2eRate, seconds: s.e2eDurationS, runs: s.runs, components: 'ingest, router and sinks: one process each', topicPrefix: prefix, partitions: s.partitions },
        runs: runs.map((m, i) => ({ run: i + 1, ...m })),
        notes,
      };
    } finally {
      await loader?.stop();
      await Promise.all(procs.map((p) => p.stop()));
      await receiver?.stop();
      await kafka.cleanup(s.keepTopics).catch(() => undefined);
      await kafka.deleteGroups(prefix).catch(() => undefined);
      await kafka.close();
    }
  },
};
