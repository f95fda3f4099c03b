import { autocannon, type LoadResult } from '../lib/autocannon.ts';
import { childScript, startChild, type Child } from '../lib/child.ts';
import type { BenchContext, Scenario } from '../lib/context.ts';
import { AUTH_HEADER, trackBody } from '../lib/events.ts';
import { BenchKafka } from '../lib/kafka.ts';
import { localDatabase, startOrreryProcess, type RunningOrrery } from '../lib/orrery.ts';
import { availableCores } from '../../core/cluster.ts';
import { row } from '../lib/report.ts';
import { summarize } from '../lib/stats.ts';
import { topicNames } from '../../core/topics.ts';

/**
 * POST /v1/track at a fixed concurrency against `orrery start ingest` (real Kafka, acks=-1,
 * idempotent; Redis rate limiter), against a bare Hono app on @hono/node-server and against
 * bare node:http. Runs are interleaved (orrery, hono, http, orrery, …), so that the three
 * share the machine's background equally. With a local Postgres (which `--workers` needs)
 * and more than one core, `orrery start ingest --workers auto` (one process per core) runs
 * in the rotation too, against the same baselines and against the single process.
 */
export const scenario: Scenario = {
  name: 'ingest-track',
  description: 'req/s and latency of POST /v1/track, orrery ingest vs bare Hono and bare node:http',
  async run(ctx: BenchContext) {
    const s = ctx.settings;
    const prefix = `bench-${ctx.runId}-track`;
    const kafka = new BenchKafka(ctx.services.kafkaBrokers);
    const body = trackBody();
    const headers = { 'content-type': 'application/json', authorization: AUTH_HEADER };
    let orrery: RunningOrrery | undefined;
    let workers: RunningOrrery | undefined;
    const cores = availableCores();
    const children: Child<{ port: number }>[] = [];
    try {
      orrery = await startOrreryProcess(ctx, { components: ['ingest'], prefix, groupTag: 'track', label: 'ingest' });
      kafka.track(topicNames(prefix).raw, topicNames(prefix).dlq);
      if (cores > 1 && localDatabase()) {
        workers = await startOrreryProcess(ctx, { components: ['ingest'], prefix, groupTag: 'track-workers', label: 'ingest-workers', env: { INGEST_WORKERS: 'auto' } });
      }
      const hono = await startChild<{ port: number }>(childScript('hono-server'), {});
      children.push(hono);
      const http = await startChild<{ port: number }>(childScript('http-server'), {});
      children.push(http);
      const targets = [
        { name: 'orrery', url: `${orrery.url}/v1/track` },
        { name: 'hono', url: `http://127.0.0.1:${hono.ready.port}/v1/track` },
        { name: 'node-http', url: `http://127.0.0.1:${http.ready.port}/v1/track` },
        ...(workers ? [{ name: 'orrery-workers', url: `${workers.url}/v1/track` }] : []),
      ];
      const load = (url: string, seconds: number) => autocannon({ url, body, headers, connections: s.connections, seconds, dir: ctx.tmpDir });
      for (const t of targets) {
        if (s.warmupS > 0) await load(t.url, s.warmupS);
      }
      const results: Record<string, LoadResult[]> = Object.fromEntries(targets.map((t) => [t.name, []]));
      for (let run = 0; run < s.runs; run++) {
        for (const t of targets) {
          const r = await load(t.url, s.durationS);
          results[t.name]!.push(r);
          ctx.log(`  run ${run + 1}/${s.runs} ${t.name}: ${Math.round(r.okPerSec)} req/s, p50 ${r.latencyP50} ms, p99 ${r.latencyP99} ms, non2xx ${r.non2xx}, errors ${r.errors}`);
        }
      }
      const rps = (n: string) => summarize(results[n]!.map((r) => r.okPerSec));
      const p50 = (n: string) => summarize(results[n]!.map((r) => r.latencyP50));
      const p99 = (n: string) => summarize(results[n]!.map((r) => r.latencyP99));
      const notes: string[] = [];
      for (const name of ['orrery', 'orrery-workers'].filter((n) => results[n])) {
        const bad = results[name]!.reduce((n, r) => n + r.non2xx + r.errors + r.timeouts, 0);
        if (bad > 0) notes.push(`${name} answered ${bad} requests with a non-2xx, an error or a timeout (not counted in req/s)`);
      }
      if (!workers) notes.push(cores > 1 ? 'no --workers row: it needs a local Postgres (DATABASE_URL on 127.0.0.1)' : 'no --workers row: one core');
      return {
        metrics: [
          row('req/s', 'req/s', rps('orrery'), { name: 'hono', summary: rps('hono') }, { on: 'ratio', op: '>=', value: 0.5 }),
          row('req/s', 'req/s', rps('orrery'), { name: 'node:http', summary: rps('node-http') }),
          row('latency p50', 'ms', p50('orrery'), { name: 'hono', summary: p50('hono') }),
          row('latency p99', 'ms', p99('orrery'), { name: 'hono', summary: p99('hono') }),
          ...(workers
            ? [
                row(`req/s, ${cores} workers`, 'req/s', rps('orrery-workers'), { name: 'hono', summary: rps('hono') }),
                row(`req/s, ${cores} workers`, 'req/s', rps('orrery-workers'), { name: 'orrery, 1 process', summary: rps('orrery') }),
              ]
            : []),
        ],
        settings: { workers: workers ? cores : 1, connections: s.connections, seconds: s.durationS, runs: s.runs, warmupS: s.warmupS, bodyBytes: Buffer.byteLength(body), topicPrefix: prefix, partitions: s.partitions },
        runs: Object.entries(results).flatMap(([target, rs]) => rs.map((r, i) => ({ target, run: i + 1, ...r }))),
        notes,
      };
    } finally {
      await orrery?.stop();
      await workers?.stop();
      await Promise.all(children.map((c) => c.stop()));
      await kafka.cleanup(s.keepTopics).catch(() => undefined);
      await kafka.close();
    }
  },
};
