#!/usr/bin/env node
/**
 * `node bench/sink-recovery.ts [failFirst] [events] [users]`: how long a webhook destination
 * takes to get N events when its receiver fails its first `failFirst` requests with 500 and
 * answers 200 after that (issue #15, observation 4), through one `orrery start` process
 * (ingest → router → sinks) on the real Kafka, Redis and Postgres, with the default sinks
 * settings. Clocked from the ingest 2xx of the batch to the N-th distinct event accepted by
 * the receiver; also prints the receiver's failed requests and the dead letters.
 *
 * Needs KAFKA_BROKERS, DATABASE_URL and REDIS_URL (eval "$(test/services/up)").
 */
import { uniqueName, waitFor } from '../test/helpers/index.ts';
import { startOrrery } from '../test/helpers/process.ts';
import { startReceiver } from '../test/helpers/receiver.ts';
import { deadLetterCount, sendBatch, webhookPlatform } from '../test/helpers/webhook-platform.ts';

const failFirst = Number(process.argv[2] ?? 10);
const N = Number(process.argv[3] ?? 500);
const USERS = Number(process.argv[4] ?? 50);

const receiver = await startReceiver({ respond: (call) => (call <= failFirst ? 500 : 200) });
const { env } = await webhookPlatform(receiver.url, { LOG_LEVEL: 'warn' });
const orrery = await startOrrery(['start'], env);
try {
  const tag = uniqueName('r');
  const events = Array.from({ length: N }, (_, i) => ({ type: 'track', event: 'Tick', userId: `${tag}-u${i % USERS}`, messageId: `${tag}-${i}` }));
  await sendBatch(orrery.url, events);
  const t0 = performance.now();
  const deadLetters = () => deadLetterCount(env);
  await waitFor(async () => new Set(receiver.accepted().map((b) => b.messageId)).size + (await deadLetters()) >= N, {
    timeoutMs: 600_000,
    intervalMs: 100,
    what: `${N} events delivered or dead-lettered`,
  });
  const ms = performance.now() - t0;
  const failed = receiver.receipts.filter((r) => r.status >= 300).length;
  console.log(
    JSON.stringify({ failFirst, events: N, users: USERS, seconds: Math.round(ms / 100) / 10, delivered: new Set(receiver.accepted().map((b) => b.messageId)).size, failedRequests: failed, requests: receiver.receipts.length, deadLetters: await deadLetters() }),
  );
} finally {
  await orrery.stop();
  await receiver.close();
}
