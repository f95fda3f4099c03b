import { afterAll, describe, it } from 'vitest';
import { waitFor } from '../../helpers/index.ts';
import { expectGuarantees, faultEnv, faultService, FAULT_WRITE_KEY, settle, sleep, startLoad, startPipeline, startReceiver } from '../../helpers/faults.ts';

/**
 * Fault suite, case 4 (issue #15): Redis stops under load. Redis holds only the router's
 * dedup marks, the sinks' delivered marks and the rate limiter, so the pipeline goes on
 * without it; what it costs is duplicates, which are counted.
 */
describe('fault: Redis stopped under load', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    await faultService('up', 'redis');
    for (const c of closers.splice(0)) await c();
  });

  const rate = faultEnv.rate(200);
  const downMs = faultEnv.ms('REDIS_DOWN', 20_000);
  it(`Redis down ${downMs / 1000} s at ${rate} events/s: the pipeline goes on, nothing lost, order kept`, async () => {
    const receiver = await startReceiver();
    closers.push(receiver.close);
    const pipeline = await startPipeline({ receiverUrl: receiver.url });
    closers.push(pipeline.stop);
    const count = Math.round(rate * (faultEnv.seconds(10) + downMs / 1000 + 10));
    const load = startLoad({ url: pipeline.ingestUrl, writeKey: FAULT_WRITE_KEY, rate, count, users: faultEnv.users() });
    await waitFor(() => load.acked.size >= rate * 5, { timeoutMs: 60_000, what: 'load under way' });

    await faultService('down', 'redis');
    const ackedBefore = load.acked.size;
    await sleep(downMs);
    const ackedDuring = load.acked.size - ackedBefore;
    await faultService('up', 'redis');

    const report = await settle(load, receiver, { timeoutMs: 120_000 });
    // Without Redis nothing remembers what was delivered: a batch re-read in that time can
    // repeat. Bound: the events acknowledged while Redis was down.
    expectGuarantees(`redis down ${downMs / 1000}s at ${rate}/s`, report, { maxDuplicates: Math.max(ackedDuring, 1), why: 'at most the events acknowledged while Redis was down' }, `${ackedDuring} acked while Redis was down`);
  }, 360_000);
});
