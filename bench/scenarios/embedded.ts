import { autocannon } from '../lib/autocannon.ts';
import { childScript, startChild, type Child } from '../lib/child.ts';
import type { BenchContext, Scenario } from '../lib/context.ts';
import { AUTH_HEADER, trackBody } from '../lib/events.ts';
import { BenchKafka } from '../lib/kafka.ts';
import { memoryOf, startOrreryProcess, type RunningOrrery } from '../lib/orrery.ts';
import { row } from '../lib/report.ts';
import { nowMs, pollUntil, sleep, summarize } from '../lib/stats.ts';
import { topicNames } from '../../core/topics.ts';

/** Issue #19's targets for `orrery start` with nothing configured. */
export const EMBEDDED_TARGETS = { idleMiB: 120, peakMiB: 200, readyMs: 1_500 } as const;

/** How long the process is left alone after /readyz answers before "idle" is read. */
const SETTLE_MS = 3_000;

interface Measured {
  /** From spawning the process to the first 200 from /readyz. */
  readyMs: number;
  idleMiB: number;
  /** VmHWM once the load is delivered: the highest RSS of start and load together. */
  peakMiB: number;
  accepted: number;
  delivered: number;
  /** Accepted events ÷ seconds from the load's start to the last delivery at the receiver. */
  eventsPerSec: number;
}

interface ReceiverStats {
  events: number;
  last: number;
}

/**
 * The whole platform in one process, `orrery start` (ingest, router, sinks, Pilot and GitOps
 * on its embedded default), twice each run: on the **embedded** defaults (KAFKA_BROKERS,
 * DATABASE_URL and REDIS_URL empty: the embedded log, store and marks under the data dir),
 * and beside it on **Kafka**, Postgres and Redis, the figure the embedded one is compared
 * with. Each: the time from spawn to the first 200 from `/readyz`, idle RSS, then
 * `BENCH_DURATION_S` of single `POST /v1/track` calls at `BENCH_CONNECTIONS`, through the
 * router and the webhook sink to a local receiver (its own process), until every accepted
 * event arrived; the peak RSS (VmHWM) after that. One source, one webhook destination, one
 * route, from the config file (so no demo; the demo's own receiver is not measurable).
 */
export const scenario: Scenario = {
  name: 'embedded',
  description: 'orrery start on its embedded defaults (no services) vs on Kafka, Postgres and Redis: start time, memory, events/s through the pipeline',
  async run(ctx: BenchContext) {
    const s = ctx.settings;
    const kafka = new BenchKafka(ctx.services.kafkaBrokers);
    const timeoutMs = s.timeoutS * 1000;
    const body = trackBody();
    const headers = { 'content-type': 'application/json', authorization: AUTH_HEADER };
    let receiver: Child<{ url: string }> | undefined;
    const results: Record<'embedded' | 'kafka', Measured[]> = { embedded: [], kafka: [] };
    try {
      receiver = await startChild<{ url: string }>(childScript('receiver'), { record: false });
      const rcv = receiver;
      const stats = () => rcv.request<ReceiverStats>({ cmd: 'stats' });

      const once = async (mode: 'embedded' | 'kafka', label: string): Promise<Measured> => {
        const prefix = `bench-${ctx.runId}-emb-${label}`;
        if (mode === 'kafka') {
          const topics = topicNames(prefix);
          kafka.track(topics.raw, topics.dlq, topics.destination('hook'));
        }
        await rcv.request({ cmd: 'reset' });
        let orrery: RunningOrrery | undefined;
        try {
          const started = nowMs();
          orrery = await startOrreryProcess(ctx, {
            components: [],
            prefix,
            groupTag: label,
            label: mode,
            webhookUrl: rcv.ready.url,
            // Kafka mode on the product's default client (the bench's own default is kafkajs).
            env: mode === 'embedded' ? { KAFKA_BROKERS: '', DATABASE_URL: '', REDIS_URL: '' } : { KAFKA_CLIENT: ctx.kafkaClient ?? 'platformatic' },
          });
          const url = orrery.url;
          await pollUntil(async () => ((await fetch(`${url}/readyz`).then((r) => r.status).catch(() => 0)) === 200 ? true : undefined), `${mode}: /readyz`, timeoutMs, 20);
          const readyMs = nowMs() - started;
          await sleep(SETTLE_MS);
          const idleMiB = memoryOf(orrery.pid)!.rssMiB;
          const loadStarted = Date.now();
          const load = await autocannon({ url: `${url}/v1/track`, body, headers, connections: s.connections, seconds: s.durationS, dir: ctx.tmpDir });
          if (load.non2xx + load.errors + load.timeouts > 0) ctx.log(`  ${mode} ${label}: ${load.non2xx} non-2xx, ${load.errors} errors, ${load.timeouts} timeouts`);
          const st = await pollUntil(async () => {
            const now = await stats();
            return now.events >= load.ok ? now : undefined;
          }, `${mode}: ${load.ok} events at the receiver`, timeoutMs, 50);
          const peakMiB = memoryOf(orrery.pid)!.hwmMiB;
          return { readyMs, idleMiB, peakMiB, accepted: load.ok, delivered: st.events, eventsPerSec: load.ok / ((st.last - loadStarted) / 1000) };
        } finally {
          await orrery?.stop();
          if (mode === 'kafka') {
            await kafka.cleanup(s.keepTopics).catch(() => undefined);
            await kafka.deleteGroups(prefix).catch(() => undefined);
          }
        }
      };

      for (let run = 0; run < s.runs; run++) {
        const order: Array<'embedded' | 'kafka'> = run % 2 === 0 ? ['embedded', 'kafka'] : ['kafka', 'embedded'];
        for (const mode of order) {
          const m = await once(mode, `r${run + 1}`);
          results[mode].push(m);
          ctx.log(`  run ${run + 1}/${s.runs} ${mode}: ready in ${Math.round(m.readyMs)} ms, idle ${m.idleMiB.toFixed(0)} MiB, peak ${m.peakMiB.toFixed(0)} MiB, ${Math.round(m.eventsPerSec)} events/s (${m.delivered}/${m.accepted} delivered)`);
        }
      }
      const of = (mode: 'embedded' | 'kafka', f: (m: Measured) => number) => summarize(results[mode].map(f));
      const notes: string[] = [];
      for (const mode of ['embedded', 'kafka'] as const) {
        // autocannon counts the 2xx answered within the duration; up to one request per
        // connection is still in flight then and is delivered too.
        for (const [i, m] of results[mode].entries()) {
          if (m.delivered < m.accepted) notes.push(`${mode} run ${i + 1}: LOST: ${m.delivered} delivered of ${m.accepted} accepted`);
          else if (m.delivered > m.accepted + s.connections) notes.push(`${mode} run ${i + 1}: ${m.delivered} delivered of ${m.accepted} accepted: more than the ${s.connections} requests in flight at the end (redeliveries)`);
        }
      }
      return {
        metrics: [
          row('start to /readyz 200', 'ms', of('embedded', (m) => m.readyMs), { name: 'on Kafka, Postgres, Redis', summary: of('kafka', (m) => m.readyMs) }, { on: 'orrery', op: '<', value: EMBEDDED_TARGETS.readyMs }),
          row('idle RSS', 'MiB', of('embedded', (m) => m.idleMiB), { name: 'on Kafka, Postgres, Redis', summary: of('kafka', (m) => m.idleMiB) }, { on: 'orrery', op: '<', value: EMBEDDED_TARGETS.idleMiB }),
          row('peak RSS (VmHWM), start and load', 'MiB', of('embedded', (m) => m.peakMiB), { name: 'on Kafka, Postgres, Redis', summary: of('kafka', (m) => m.peakMiB) }, { on: 'orrery', op: '<', value: EMBEDDED_TARGETS.peakMiB }),
          row('events/s through the pipeline (single /v1/track calls)', 'events/s', of('embedded', (m) => m.eventsPerSec), { name: 'on Kafka, Postgres, Redis', summary: of('kafka', (m) => m.eventsPerSec) }),
        ],
        settings: { settleMs: SETTLE_MS, connections: s.connections, durationS: s.durationS },
        runs: results.embedded.map((embedded, i) => ({ run: i + 1, embedded, kafka: results.kafka[i] })),
        notes,
      };
    } finally {
      await receiver?.stop();
      // Its admin connection would keep the bench process from exiting.
      await kafka.close().catch(() => undefined);
    }
  },
};
