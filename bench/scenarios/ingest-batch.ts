import { autocannon, type LoadResult } from '../lib/autocannon.ts';
import { childScript, startChild, type Child } from '../lib/child.ts';
import type { BenchContext, Scenario } from '../lib/context.ts';
import { AUTH_HEADER, batchBody } from '../lib/events.ts';
import { BenchKafka } from '../lib/kafka.ts';
import { startOrreryProcess, type RunningOrrery } from '../lib/orrery.ts';
import { row } from '../lib/report.ts';
import { summarize } from '../lib/stats.ts';
import { topicNames } from '../../core/topics.ts';

interface ProduceRun {
  events: number;
  errors: number;
  seconds: number;
  eventsPerSec: number;
  sendP50: number;
  sendP99: number;
}

/**
 * POST /v1/batch (BENCH_BATCH_SIZE events a request) at a fixed concurrency against
 * `orrery start ingest`, against the produce limit: kafkajs `sendBatch` of the same
 * envelopes straight to Kafka, at the same concurrency, with the producer set up as
 * Orrery's (idempotent, acks=-1). Runs interleave.
 */
export const scenario: Scenario = {
  name: 'ingest-batch',
  description: 'events/s of POST /v1/batch, orrery ingest vs kafkajs sendBatch of the same events',
  async run(ctx: BenchContext) {
    const s = ctx.settings;
    const prefix = `bench-${ctx.runId}-batch`;
    const baselineTopic = `${prefix}.baseline.raw`;
    const kafka = new BenchKafka(ctx.services.kafkaBrokers);
    const body = batchBody(s.batchSize);
    const headers = { 'content-type': 'application/json', authorization: AUTH_HEADER };
    let orrery: RunningOrrery | undefined;
    let producer: Child | undefined;
    try {
      await kafka.createTopics([baselineTopic], s.partitions);
      orrery = await startOrreryProcess(ctx, { components: ['ingest'], prefix, groupTag: 'batch', label: 'ingest' });
      kafka.track(topicNames(prefix).raw, topicNames(prefix).dlq);
      producer = await startChild(childScript('kafka-produce'), {
        brokers: ctx.services.kafkaBrokers,
        topic: baselineTopic,
        batchSize: s.batchSize,
        connections: s.connections,
      });
      const url = `${orrery.url}/v1/batch`;
      const load = (seconds: number) => autocannon({ url, body, headers, connections: s.connections, seconds, dir: ctx.tmpDir });
      if (s.warmupS > 0) {
        await load(s.warmupS);
        await producer.request({ cmd: 'run', seconds: s.warmupS });
      }
      const ours: LoadResult[] = [];
      const base: ProduceRun[] = [];
      for (let run = 0; run < s.runs; run++) {
        const r = await load(s.durationS);
        ours.push(r);
        const b = await producer.request<ProduceRun>({ cmd: 'run', seconds: s.durationS });
        base.push(b);
        ctx.log(
          `  run ${run + 1}/${s.runs} orrery: ${Math.round(r.okPerSec * s.batchSize)} events/s (p50 ${r.latencyP50} ms, p99 ${r.latencyP99} ms, non2xx ${r.non2xx}); ` +
            `sendBatch: ${Math.round(b.eventsPerSec)} events/s (p50 ${b.sendP50.toFixed(1)} ms, p99 ${b.sendP99.toFixed(1)} ms, errors ${b.errors})`,
        );
      }
      const notes: string[] = [];
      const bad = ours.reduce((n, r) => n + r.non2xx + r.errors + r.timeouts, 0);
      if (bad > 0) notes.push(`orrery answered ${bad} requests with a non-2xx, an error or a timeout (not counted)`);
      return {
        metrics: [
          row('events/s', 'events/s', summarize(ours.map((r) => r.okPerSec * s.batchSize)), { name: 'kafkajs sendBatch', summary: summarize(base.map((b) => b.eventsPerSec)) }, { on: 'ratio', op: '>=', value: 0.8 } /* issue #18's first bar (#6 had 0.5) */),
          row('latency p50 (request vs sendBatch)', 'ms', summarize(ours.map((r) => r.latencyP50)), { name: 'kafkajs sendBatch', summary: summarize(base.map((b) => b.sendP50)) }),
          row('latency p99 (request vs sendBatch)', 'ms', summarize(ours.map((r) => r.latencyP99)), { name: 'kafkajs sendBatch', summary: summarize(base.map((b) => b.sendP99)) }),
        ],
        settings: { connections: s.connections, batchSize: s.batchSize, seconds: s.durationS, runs: s.runs, bodyBytes: Buffer.byteLength(body), topicPrefix: prefix, baselineTopic, partitions: s.partitions },
        runs: [...ours.map((r, i) => ({ target: 'orrery', run: i + 1, ...r })), ...base.map((b, i) => ({ target: 'kafkajs-sendBatch', run: i + 1, ...b }))],
        notes,
      };
    } finally {
      await orrery?.stop();
      await producer?.stop();
      await kafka.cleanup(s.keepTopics).catch(() => undefined);
      await kafka.close();
    }
  },
};
