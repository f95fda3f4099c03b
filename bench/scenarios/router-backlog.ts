import type { BenchContext, Scenario } from '../lib/context.ts';
import { rawRecords } from '../lib/events.ts';
import { BenchKafka } from '../lib/kafka.ts';
import { startOrreryProcess, type RunningOrrery } from '../lib/orrery.ts';
import { row } from '../lib/report.ts';
import { nowMs, pollUntil, summarize } from '../lib/stats.ts';
import { createKafkaBus } from '../../core/bus/kafka.ts';
import { eventKey, type Envelope } from '../../core/envelope.ts';
import { createLogger } from '../../core/logger.ts';
import { topicNames } from '../../core/topics.ts';

/** The source the backlog's other half comes from, absent from the config the router runs with. */
const GONE = 'gone';

interface Measured {
  /** Backlog ÷ (lag 0 − first output). */
  eventsPerSec: number;
  /** From spawning `orrery start router` to lag 0 (process start and group join included). */
  zeroLagMs: number;
  destCount: number;
  dlqCount: number;
}

/**
 * Issue #15, fault case 7: the router stopped while N events accumulate on the raw topic,
 * half of them from a source removed meanwhile, then `orrery start router` again, every
 * topic on the broker's defaults (max.message.bytes 1 MiB). Timed from the spawn to lag 0;
 * events/s from the first output to lag 0. The baseline is the same backlog all from the
 * live source: what the dead-letter half costs. (The group has no offsets, so it reads the
 * backlog from the start, as a router stopped before it arrived would; the "removed"
 * source is one the config does not have, which is what the router sees either way.)
 */
export const scenario: Scenario = {
  name: 'router-backlog',
  onlyWhenNamed: true,
  description: 'issue #15 case 7: a backlog of BENCH_BACKLOG_EVENTS, half from a removed source, on default topic settings: events/s and time to lag 0, vs the same backlog all from a live source',
  async run(ctx: BenchContext) {
    const s = ctx.settings;
    const n = s.backlogEvents;
    const kafka = new BenchKafka(ctx.services.kafkaBrokers);
    // A million events take minutes on 2 cores: the bound is per event, not BENCH_TIMEOUT_S alone.
    const timeoutMs = Math.max(s.timeoutS * 1000, n / 2);

    async function round(label: string, goneShare: boolean): Promise<Measured & { preloadMs: number }> {
      const prefix = `bench-${ctx.runId}-bl-${label}`;
      const topics = topicNames(prefix);
      const dest = topics.destination('hook');
      await kafka.createTopics([topics.raw, topics.dlq, dest], s.partitions);
      const tag = `${ctx.runId}-${label}`;
      const preloadMs = await kafka.preload(topics.raw, n, (from, to) =>
        rawRecords(tag, from, to).map((r, k) => {
          if (!goneShare || (from + k) % 2 === 0) return r;
          const env = { ...(JSON.parse(r.value) as Envelope), sourceId: GONE };
          return { key: eventKey(GONE, env), value: JSON.stringify(env) };
        }),
      );
      let router: RunningOrrery | undefined;
      // A bus per round: a client that knew a since-deleted topic keeps asking for it.
      const lagBus = createKafkaBus({ brokers: ctx.services.kafkaBrokers.split(','), clientId: 'bench-lag', logger: createLogger({ level: 'silent' }) });
      try {
        const spawned = nowMs();
        router = await startOrreryProcess(ctx, { components: ['router'], prefix, groupTag: label, label: 'rb' });
        const group = `${prefix}.router.${label}`;
        let first: number | undefined;
        let lastLag = Number.POSITIVE_INFINITY;
        let lastMove = nowMs();
        let lagError: string | undefined;
        const zero = await pollUntil(
          async () => {
            const t = nowMs();
            if (first === undefined && (await kafka.count(dest)) + (await kafka.count(topics.dlq)) > 0) first = t;
            let lag: number;
            try {
              lag = await lagBus.lag!(group, topics.raw);
            } catch (err) {
              lagError = (err as Error).message;
              lag = Number.POSITIVE_INFINITY;
            }
            if (lag === 0) return t;
            if (lag < lastLag) lastMove = t;
            lastLag = Math.min(lastLag, lag);
            // The fault this scenario is about: a router up, and the lag going nowhere.
            if (t - lastMove > 30_000) throw new Error(`${label}: lag stuck at ${lastLag} for 30 s${lagError ? ` (last lag error: ${lagError})` : ''}`);
            return undefined;
          },
          `lag 0 on ${topics.raw}`,
          timeoutMs,
          250,
        );
        const destCount = await kafka.count(dest);
        const dlqCount = await kafka.count(topics.dlq);
        return { eventsPerSec: n / ((zero - (first ?? spawned)) / 1000), zeroLagMs: zero - spawned, destCount, dlqCount, preloadMs };
      } finally {
        await router?.stop();
        await lagBus.close();
        await kafka.cleanup(s.keepTopics).catch(() => undefined);
        await kafka.deleteGroups(prefix).catch(() => undefined);
      }
    }

    try {
      const ours: Array<Measured & { preloadMs: number }> = [];
      const base: Array<Measured & { preloadMs: number }> = [];
      for (let run = 0; run < s.runs; run++) {
        // Take turns going first: the second runs on a Kafka that just took a backlog.
        const pair = run % 2 === 0 ? [true, false] : [false, true];
        for (const gone of pair) {
          // Short labels: they end up in a schema name (63 characters at most).
          const m = await round(`${gone ? 'h' : 'a'}${run + 1}`, gone);
          (gone ? ours : base).push(m);
          ctx.log(`  run ${run + 1}/${s.runs} ${gone ? 'half from a removed source' : 'all from a live source'}: ${Math.round(m.eventsPerSec)} events/s, lag 0 after ${(m.zeroLagMs / 1000).toFixed(1)} s; dest ${m.destCount}, dlq ${m.dlqCount}`);
        }
      }
      const notes: string[] = ["every topic has the broker's defaults (max.message.bytes 1 MiB)"];
      for (const [i, m] of ours.entries()) {
        if (m.dlqCount !== Math.floor(n / 2) || m.destCount !== n - Math.floor(n / 2)) notes.push(`run ${i + 1}: ${m.destCount} routed and ${m.dlqCount} dead letters for ${n} events (expected ${n - Math.floor(n / 2)} and ${Math.floor(n / 2)})`);
      }
      for (const [i, m] of base.entries()) if (m.destCount !== n || m.dlqCount !== 0) notes.push(`baseline run ${i + 1}: ${m.destCount} routed, ${m.dlqCount} dead letters for ${n} events`);
      return {
        metrics: [
          row('events/s to lag 0', 'events/s', summarize(ours.map((m) => m.eventsPerSec)), { name: 'all from a live source', summary: summarize(base.map((m) => m.eventsPerSec)) }),
          row('time to lag 0 (from spawn)', 's', summarize(ours.map((m) => m.zeroLagMs / 1000)), { name: 'all from a live source', summary: summarize(base.map((m) => m.zeroLagMs / 1000)) }),
        ],
        settings: { events: n, goneShare: 0.5, partitions: s.partitions, runs: s.runs, topicConfig: 'broker defaults' },
        runs: [...ours.map((m, i) => ({ target: 'half-gone', run: i + 1, ...m })), ...base.map((m, i) => ({ target: 'all-live', run: i + 1, ...m }))],
        notes,
      };
    } finally {
      await kafka.close();
    }
  },
};
