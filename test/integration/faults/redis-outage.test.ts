import { afterAll, describe, expect, it } from 'vitest';
import { deliveries, expectGuarantees, faultEnv, faultService, settle, sleep, startFaultRun } from '../../helpers/faults.ts';

/**
 * Fault suite, case 4 (issue #15): Redis stops under load. Redis holds only the ingest rate
 * limiter, the router's dedup marks and the sinks' delivered marks, so the pipeline must go
 * on without it: events are acknowledged and delivered during the outage. What it may cost
 * is duplicates, which are counted.
 */
describe('fault: Redis stopped under load', () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    await faultService('up', 'redis');
    for (const c of closers.splice(0)) await c();
  });

  const rate = faultEnv.rate(200);
  const downMs = faultEnv.ms('REDIS_DOWN', 20_000);
  it(`Redis down ${downMs / 1000} s at ${rate} events/s: the pipeline goes on, nothing lost, order kept`, async () => {
    const count = Math.round(rate * (faultEnv.seconds(10) + downMs / 1000 + 10));
    const { receiver, load } = await startFaultRun({ rate, count, closers });

    await faultService('down', 'redis');
    const ackedBefore = load.acked.size;
    const deliveredBefore = deliveries(receiver).length;
    await sleep(downMs);
    const ackedDuring = load.acked.size - ackedBefore;
    const deliveredDuring = deliveries(receiver).length - deliveredBefore;
    await faultService('up', 'redis');

    const report = await settle(load, receiver, { timeoutMs: 120_000 });
    // Without Redis nothing remembers what was delivered: a batch re-read in that time can
    // repeat. Bound: the events acknowledged while Redis was down.
    const due = Math.round((rate * downMs) / 1000);
    expectGuarantees(
      `redis down ${downMs / 1000}s at ${rate}/s`,
      report,
      { maxDuplicates: Math.max(ackedDuring, 1), why: 'at most the events acknowledged while Redis was down' },
      `while Redis was down: ${ackedDuring} acked and ${deliveredDuring} delivered of ${due} sent on schedule`,
    );
    // "Goes on": at least half of what the load offered in the outage is acknowledged in it.
    expect(ackedDuring, 'events acknowledged while Redis was down').toBeGreaterThanOrEqual(due / 2);
    expect(deliveredDuring, 'events delivered while Redis was down').toBeGreaterThan(0);
  }, 360_000);
});
