import { childConfig, onStop, serveCommands } from '../lib/child.ts';
import { envelopeOf, inbound } from '../lib/events.ts';
import { busLikeProducer, kafkaClient } from '../lib/kafka.ts';
import { nowMs, percentile } from '../lib/stats.ts';

/**
 * Baseline for ingest-batch, the produce limit: `connections` loops, each sending a batch
 * of `batchSize` events with kafkajs `sendBatch` and waiting for the acknowledgement, then
 * the next. The producer is set up as Orrery's bus sets up its own (idempotent, acks=-1,
 * one request in flight, the default partitioner), and the events are the envelopes ingest
 * would write for the same requests (same sizes, same key spread).
 */
interface Config {
  brokers: string;
  topic: string;
  batchSize: number;
  connections: number;
}
const cfg = childConfig<Config>();
const kafka = kafkaClient(cfg.brokers, 'bench-produce');
const producer = busLikeProducer(kafka);
await producer.connect();

// A pool of distinct batches (distinct keys and ids), sent round-robin.
const POOL = 64;
const pool = Array.from({ length: POOL }, (_, b) =>
  Array.from({ length: cfg.batchSize }, (_, i) => {
    const id = `produce-${process.pid}-${b}-${i}`;
    const { key, envelope } = envelopeOf(inbound(id, `user-${b}-${i % 20}`, i));
    return { key, value: JSON.stringify(envelope), headers: {} };
  }),
);

async function run(seconds: number) {
  const latencies: number[] = [];
  let batches = 0;
  let errors = 0;
  const started = nowMs();
  const deadline = started + seconds * 1000;
  let next = 0;
  const loop = async () => {
    while (nowMs() < deadline) {
      const messages = pool[next++ % POOL]!;
      const t = nowMs();
      try {
        await producer.sendBatch({ topicMessages: [{ topic: cfg.topic, messages }], acks: -1 });
        latencies.push(nowMs() - t);
        batches++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: cfg.connections }, loop));
  const elapsed = (nowMs() - started) / 1000;
  return {
    batches,
    events: batches * cfg.batchSize,
    errors,
    seconds: elapsed,
    eventsPerSec: (batches * cfg.batchSize) / elapsed,
    sendP50: percentile(latencies, 50),
    sendP99: percentile(latencies, 99),
  };
}

serveCommands({ pid: process.pid }, async (c) => {
  if (c.cmd === 'run') return run(Number(c.seconds));
  throw new Error(`unknown command ${c.cmd}`);
});
onStop(() => producer.disconnect());
