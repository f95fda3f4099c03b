import { afterAll, beforeAll, describe, it } from 'vitest';
import { waitFor } from '../../helpers/index.ts';
import {
  deliveries,
  expectGuarantees,
  faultEnv,
  FAULT_WRITE_KEY,
  settle,
  startLoad,
  startPipeline,
  startReceiver,
  type Component,
  type Pipeline,
  type Receiver,
} from '../../helpers/faults.ts';

/**
 * Fault suite, case 3 (issue #15): kill -9 of ingest, then of the router, then of the
 * sinks, each under load, then a restart of the killed process. Nothing acknowledged is
 * lost, each user's events arrive in order, and the duplicates are counted.
 */
describe('fault: kill -9 of each component under load', () => {
  const rate = faultEnv.rate(200);
  const count = rate * faultEnv.seconds(20);
  let receiver: Receiver;
  let pipeline: Pipeline;
  beforeAll(async () => {
    receiver = await startReceiver();
    pipeline = await startPipeline({ receiverUrl: receiver.url });
  });
  afterAll(async () => {
    await pipeline?.stop();
    await receiver?.close();
  });

  // The bound of each: ingest answers 2xx only once durable and the load never retries, so
  // a crash there repeats nothing; the router's re-read of uncommitted offsets is caught by
  // its messageId dedup and the sinks' delivered marks; a sink killed between a delivery
  // and its mark repeats at most what it had not marked yet: the calls in flight (one
  // 100-event call per partition batch, sinks.partitionConcurrency 3 at once) and the marks
  // of one call being written (sinks/worker.ts writes marks while the lanes carry on).
  const bounds: Record<Component, { maxDuplicates: number; why: string }> = {
    ingest: { maxDuplicates: 0, why: 'acks only when durable; the load does not retry' },
    router: { maxDuplicates: 0, why: 'router dedup by messageId, then the sinks delivered marks' },
    sinks: { maxDuplicates: 400, why: 'unmarked at the kill: 3 calls of 100 in flight + 100 marks being written' },
  };

  for (const component of ['ingest', 'router', 'sinks'] as const) {
    it(`kill -9 of ${component} at ${rate} events/s: nothing acknowledged lost, order kept`, async () => {
      const load = startLoad({ url: pipeline.ingestUrl, writeKey: FAULT_WRITE_KEY, rate, count, users: faultEnv.users() });
      // Kill once a third of the load has been sent and deliveries are flowing.
      await waitFor(() => load.sent() >= count / 3 && deliveries(receiver).some((d) => String(d.messageId).startsWith(load.tag)), {
        timeoutMs: 60_000,
        what: 'load and deliveries under way',
      });
      const before = load.sent();
      await pipeline.crash(component);
      const report = await settle(load, receiver, { timeoutMs: 90_000 });
      expectGuarantees(`kill -9 ${component} at ${rate}/s`, report, bounds[component], `killed after ${before} sent, ${load.failed()} refused while down`);
    }, 240_000);
  }
});
