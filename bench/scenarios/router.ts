import { childScript, startChild, type Child } from '../lib/child.ts';
import type { BenchContext, Scenario } from '../lib/context.ts';
import { rawRecords } from '../lib/events.ts';
import { BenchKafka, RELAY_TOPIC_CONFIG } from '../lib/kafka.ts';
import { startOrreryProcess, type RunningOrrery } from '../lib/orrery.ts';
import { row } from '../lib/report.ts';
import { summarize } from '../lib/stats.ts';
import { topicNames } from '../../core/topics.ts';

interface Measured {
  eventsPerSec: number;
  ms: number;
  count: number;
  startCount: number;
}

/**
 * The router from raw to destination topic, dedup on (Redis): N events preloaded on a raw
 * topic, then `orrery start router` with a fresh consumer group, timed until all N are on
 * the destination topic; and a bare kafkajs consume → produce relay (bench/children/
 * kafka-relay.ts) over the same raw topic, to a topic with the same partitions. Each run
 * preloads fresh events (fresh messageIds, so dedup finds none of them seen), and the two
 * take turns going first.
 */
export const scenario: Scenario = {
  name: 'router',
  description: 'events/s from raw to destination topic (dedup on) vs a bare kafkajs consume → produce relay',
  async run(ctx: BenchContext) {
    const s = ctx.settings;
    const kafka = new BenchKafka(ctx.services.kafkaBrokers);
    const timeoutMs = s.timeoutS * 1000;
    const ours: Measured[] = [];
    const base: Measured[] = [];
    const extra: Array<Record<string, unknown>> = [];

    async function round(label: string, n: number, orreryFirst: boolean): Promise<{ o: Measured; b: Measured; info: Record<string, unknown> }> {
      const prefix = `bench-${ctx.runId}-router-${label}`;
      const topics = topicNames(prefix);
      const dest = topics.destination('hook');
      const relayOut = `${prefix}.relay.out`;
      await kafka.createTopics([topics.raw, topics.dlq, dest], s.partitions);
      await kafka.createTopics([relayOut], s.partitions, RELAY_TOPIC_CONFIG);
      const preloadMs = await kafka.preload(topics.raw, n, (from, to) => rawRecords(`${ctx.runId}-${label}`, from, to));
      let o: Measured | undefined;
      let b: Measured | undefined;
      const runOrrery = async () => {
        let router: RunningOrrery | undefined;
        try {
          router = await startOrreryProcess(ctx, { components: ['router'], prefix, groupTag: label, label: 'router' });
          o = await kafka.watch(dest, 0, n, timeoutMs);
        } finally {
          await router?.stop();
        }
      };
      const runRelay = async () => {
        let relay: Child | undefined;
        try {
          relay =
            ctx.kafkaClient === 'platformatic'
              ? await startChild(childScript('bus-relay'), { brokers: ctx.services.kafkaBrokers, from: topics.raw, to: relayOut, group: `${prefix}.relay`, client: 'platformatic' })
              : await startChild(childScript('kafka-relay'), { brokers: ctx.services.kafkaBrokers, from: topics.raw, to: relayOut, group: `${prefix}.relay` });
          b = await kafka.watch(relayOut, 0, n, timeoutMs);
        } finally {
          await relay?.stop();
        }
      };
      try {
        if (orreryFirst) {
          await runOrrery();
          await runRelay();
        } else {
          await runRelay();
          await runOrrery();
        }
        const info = { label, events: n, preloadMs: Math.round(preloadMs), destCount: await kafka.count(dest), dlqCount: await kafka.count(topics.dlq), relayCount: await kafka.count(relayOut) };
        return { o: o!, b: b!, info };
      } finally {
        await kafka.cleanup(s.keepTopics).catch(() => undefined);
        await kafka.deleteGroups(prefix).catch(() => undefined);
      }
    }

    try {
      if (s.warmupS > 0) {
        const w = await round('warmup', Math.min(20_000, Math.ceil(s.routerEvents / 5)), true);
        ctx.log(`  warm-up: orrery ${Math.round(w.o.eventsPerSec)} events/s, relay ${Math.round(w.b.eventsPerSec)} events/s`);
      }
      for (let run = 0; run < s.runs; run++) {
        const { o, b, info } = await round(`r${run + 1}`, s.routerEvents, run % 2 === 0);
        ours.push(o);
        base.push(b);
        extra.push(info);
        ctx.log(`  run ${run + 1}/${s.runs}: orrery ${Math.round(o.eventsPerSec)} events/s (${Math.round(o.ms)} ms), relay ${Math.round(b.eventsPerSec)} events/s (${Math.round(b.ms)} ms); ${JSON.stringify(info)}`);
      }
      // The relay on the bus's own client (issue #18): a bare kafkajs relay, or Orrery's
      // @platformatic/kafka bus adapter relaying without routing (bus-relay.ts).
      const relayName = ctx.kafkaClient === 'platformatic' ? 'platformatic relay (bus adapter)' : 'kafkajs relay';
      const notes: string[] = [
        "Orrery's topics have the broker's defaults (max.message.bytes 1 MiB); the relay's output topic has 8 MiB (see bench/README.md)",
      ];
      for (const i of extra) {
        if (i.destCount !== i.events) notes.push(`${String(i.label)}: ${String(i.destCount)} messages on the destination topic for ${String(i.events)} events`);
        if (i.dlqCount !== 0) notes.push(`${String(i.label)}: ${String(i.dlqCount)} dead letters`);
      }
      return {
        metrics: [
          row('events/s', 'events/s', summarize(ours.map((m) => m.eventsPerSec)), { name: relayName, summary: summarize(base.map((m) => m.eventsPerSec)) }, { on: 'ratio', op: '>=', value: 0.8 }),
        ],
        settings: { events: s.routerEvents, partitions: s.partitions, runs: s.runs, dedup: 'redis', outputTopicConfig: { orrery: 'broker defaults', relay: RELAY_TOPIC_CONFIG }, measuredFrom: 'first message on the destination topic to the last (group join excluded)' },
        runs: [...ours.map((m, i) => ({ target: 'orrery', run: i + 1, ...m, ...extra[i] })), ...base.map((m, i) => ({ target: relayName, run: i + 1, ...m }))],
        notes,
      };
    } finally {
      await kafka.close();
    }
  },
};
