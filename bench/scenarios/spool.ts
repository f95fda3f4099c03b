import { rm } from 'node:fs/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import { createPlatformaticBus } from '../../core/bus/platformatic.ts';
import type { Bus } from '../../core/bus/types.ts';
import { createLogger } from '../../core/logger.ts';
import { createSpool, type Spool } from '../../ingest/spool.ts';
import { openSpool } from '../../ingest/spool-sqlite.ts';
import type { BenchContext, Scenario } from '../lib/context.ts';
import { BenchKafka } from '../lib/kafka.ts';
import { row } from '../lib/report.ts';
import { nowMs, percentile, summarize } from '../lib/stats.ts';

const MAX_BYTES = 4 * 1024 ** 3;
const silentLogger = () => createLogger({ level: 'silent' });
/** What ingest's hand-off drains at a time (ingest/handoff.ts). */
const REPLAY_BATCH = 500;

type Kind = 'file' | 'sqlite';

interface Measured {
  appends: number;
  appendP50Ms: number;
  appendP99Ms: number;
  appendsPerSec: number;
  /** The event loop's delay p99 while appending: what the rest of a process (HTTP) waits meanwhile. */
  loopDelayP99Ms: number;
  replayed: number;
  replayPerSec: number;
}

/**
 * Issue #19: ingest's spool on SQLite (ingest/spool-sqlite.ts) against the segment-file spool
 * it replaced (ingest/spool.ts, kept to move old spools in), in this process, arms alternating. What ingest does
 * while Kafka is away: `BENCH_CONNECTIONS` appenders each append one ~400-byte record and
 * wait for it to be durable, again and again for `BENCH_DURATION_S` (the latency of each
 * append is what a request waits before its 2xx); then the replay once Kafka is back:
 * batches of 500 peeked, produced to a real Kafka topic through the product's bus
 * (acks=all, idempotent) and committed, until the spool is empty.
 */
export const scenario: Scenario = {
  name: 'spool',
  description: "ingest's spool on SQLite vs the segment-file spool: append latency under concurrent appenders, replay rate into Kafka (issue #19)",
  async run(ctx: BenchContext) {
    const s = ctx.settings;
    const kafka = new BenchKafka(ctx.services.kafkaBrokers);
    const topic = `bench-${ctx.runId}-spool`;
    kafka.track(topic);
    const bus: Bus = createPlatformaticBus({ brokers: ctx.services.kafkaBrokers.split(','), clientId: `bench-${ctx.runId}-spool`, logger: silentLogger() });
    const results: Record<Kind, Measured[]> = { file: [], sqlite: [] };
    const value = JSON.stringify({ type: 'track', event: 'Spooled', userId: 'u', properties: { plan: 'pro', path: '/pricing', n: 0 }, pad: 'x'.repeat(280) });
    try {
      await bus.ensureTopics([{ topic, numPartitions: 3, replicationFactor: 1 }]);
      for (let run = 0; run < s.runs; run++) {
        const order: Kind[] = run % 2 === 0 ? ['file', 'sqlite'] : ['sqlite', 'file'];
        for (const kind of order) {
          const where = join(ctx.tmpDir, `spool-${kind}-${run}`);
          const spool = kind === 'file' ? await createSpool({ dir: where, maxBytes: MAX_BYTES, logger: silentLogger() }) : await openSpool({ dir: where, maxBytes: MAX_BYTES, logger: silentLogger() });
          try {
            const m = await measure(spool, bus, topic, value, s.connections, s.durationS * 1000);
            results[kind].push(m);
            ctx.log(
              `  run ${run + 1}/${s.runs} ${kind}: ${m.appends} appends, p50 ${m.appendP50Ms.toFixed(2)} ms, p99 ${m.appendP99Ms.toFixed(2)} ms, ${Math.round(m.appendsPerSec)} appends/s, loop delay p99 ${m.loopDelayP99Ms.toFixed(2)} ms; replayed ${m.replayed} at ${Math.round(m.replayPerSec)} records/s`,
            );
          } finally {
            await spool.close();
            await rm(where, { recursive: true, force: true });
          }
        }
      }
    } finally {
      await bus.close();
      await kafka.cleanup(s.keepTopics).catch(() => undefined);
      await kafka.close();
    }
    const of = (kind: Kind, f: (m: Measured) => number) => summarize(results[kind].map(f));
    const file = (f: (m: Measured) => number) => ({ name: 'segment-file spool', summary: of('file', f) });
    return {
      metrics: [
        row(`append p99, ${s.connections} appenders, one record each`, 'ms', of('sqlite', (m) => m.appendP99Ms), file((m) => m.appendP99Ms), { on: 'ratio', op: '<=', value: 1.2 }),
        row('append p50', 'ms', of('sqlite', (m) => m.appendP50Ms), file((m) => m.appendP50Ms)),
        row('appends/s', 'appends/s', of('sqlite', (m) => m.appendsPerSec), file((m) => m.appendsPerSec)),
        row('event-loop delay p99 while appending', 'ms', of('sqlite', (m) => m.loopDelayP99Ms), file((m) => m.loopDelayP99Ms)),
        row(`replay into Kafka, batches of ${REPLAY_BATCH}`, 'records/s', of('sqlite', (m) => m.replayPerSec), file((m) => m.replayPerSec), { on: 'ratio', op: '>=', value: 0.8 }),
      ],
      settings: { appenders: s.connections, durationS: s.durationS, replayBatch: REPLAY_BATCH, valueBytes: Buffer.byteLength(value) },
      runs: results.sqlite.map((sqlite, i) => ({ run: i + 1, sqlite, file: results.file[i] })),
      notes: ['targets: the bar issue #19 sets for moving the spool ("if the hand-off\'s figures hold"): append p99 within 1.2× and replay rate at least 0.8× the segment-file spool\'s, same run'],
    };
  },
};

async function measure(spool: Spool, bus: Bus, topic: string, value: string, appenders: number, durationMs: number): Promise<Measured> {
  const latencies: number[] = [];
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const started = nowMs();
  const deadline = started + durationMs;
  await Promise.all(
    Array.from({ length: appenders }, async (_, a) => {
      for (let i = 0; nowMs() < deadline; i++) {
        const t = nowMs();
        await spool.append([{ key: `src:u${a}`, value }]);
        latencies.push(nowMs() - t);
      }
    }),
  );
  const appendMs = nowMs() - started;
  loop.disable();
  const replayStarted = nowMs();
  let replayed = 0;
  for (;;) {
    const { records, cursor } = await spool.peek(REPLAY_BATCH);
    if (records.length === 0) break;
    await bus.produce(topic, records.map((r) => ({ key: r.key, value: r.value })));
    await spool.commit(cursor);
    replayed += records.length;
  }
  const replayMs = nowMs() - replayStarted;
  return {
    appends: latencies.length,
    appendP50Ms: percentile(latencies, 50),
    appendP99Ms: percentile(latencies, 99),
    appendsPerSec: latencies.length / (appendMs / 1000),
    loopDelayP99Ms: loop.percentile(99) / 1e6,
    replayed,
    replayPerSec: replayed / (replayMs / 1000),
  };
}
