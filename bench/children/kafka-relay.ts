import { childConfig, onStop, serveCommands } from '../lib/child.ts';
import { busLikeProducer, kafkaClient } from '../lib/kafka.ts';

/**
 * Baseline for the router: a bare kafkajs consume → produce relay. The consumer and the
 * producer are set up as Orrery's bus sets up its own (eachBatch per partition, autoCommit
 * off, offsets committed after the batch's produce is acknowledged; an idempotent producer,
 * acks=-1, one request in flight). Each message is copied as it is, same key, same value:
 * no parse, no dedup, no routing, no re-encode.
 */
interface Config {
  brokers: string;
  from: string;
  to: string;
  group: string;
}
const cfg = childConfig<Config>();
const kafka = kafkaClient(cfg.brokers, 'bench-relay');
const producer = busLikeProducer(kafka);
const consumer = kafka.consumer({ groupId: cfg.group, allowAutoTopicCreation: false });
await producer.connect();
await consumer.connect();
await consumer.subscribe({ topics: [cfg.from], fromBeginning: true });
let relayed = 0;
await consumer.run({
  autoCommit: false,
  eachBatchAutoResolve: false,
  eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary, heartbeat }) => {
    if (batch.messages.length === 0) return;
    await producer.sendBatch({
      topicMessages: [{ topic: cfg.to, messages: batch.messages.map((m) => ({ key: m.key, value: m.value })) }],
      acks: -1,
    });
    relayed += batch.messages.length;
    resolveOffset(batch.lastOffset());
    const next = (BigInt(batch.lastOffset()) + 1n).toString();
    await commitOffsetsIfNecessary({ topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }] });
    await heartbeat();
  },
});
serveCommands({ pid: process.pid }, (c) => {
  if (c.cmd === 'stats') return { relayed };
  throw new Error(`unknown command ${c.cmd}`);
});
onStop(async () => {
  await consumer.disconnect();
  await producer.disconnect();
});
