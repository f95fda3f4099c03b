import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../helpers/index.ts';
import {
  expectGuarantees,
  faultEnv,
  faultService,
  FAULT_WRITE_KEY,
  listDeadLetters,
  settle,
  sleep,
  startLoad,
  startPipeline,
  startReceiver,
} from '../../helpers/faults.ts';

/**
 * Fault suite, case 6 (issue #15): the Postgres store restarts under load. Beside the
 * healthy webhook, a second destination refuses every call with 400, so each event also
 * becomes a dead letter there. The dead letters written before the restart are still
 * listed after it, the ones after it are written too (one per acknowledged event), and
 * the healthy destination gets everything in order.
 */
describe('fault: Postgres restarted under load', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    await faultService('up', 'postgres');
    for (const c of closers.splice(0)) await c();
  });

  const rate = faultEnv.rate(200);
  const downMs = faultEnv.ms('PG_DOWN', 10_000);
  it(`Postgres restarted (down ${downMs / 1000} s) at ${rate} events/s: dead letters and the control plane survive`, async () => {
    const receiver = await startReceiver();
    const refusing = await startReceiver({ respond: () => 400 });
    closers.push(receiver.close, refusing.close);
    const pipeline = await startPipeline({
      receiverUrl: receiver.url,
      extraDestinations: `  - { id: refuse, type: webhook, url: "${refusing.url}", allowPrivateNetwork: true, batch: true }`,
      extraRoutes: '  - { source: web, destination: refuse }',
    });
    closers.push(pipeline.stop);
    const count = Math.round(rate * (faultEnv.seconds(10) + downMs / 1000 + 10));
    const load = startLoad({ url: pipeline.ingestUrl, writeKey: FAULT_WRITE_KEY, rate, count, users: faultEnv.users() });
    const ours = (letters: Array<{ messageId: string; httpStatus?: number }>) => letters.filter((l) => l.messageId.startsWith(`${load.tag}-`));
    const before = await waitFor(async () => {
      const letters = ours(await listDeadLetters(pipeline.env, 'refuse'));
      return letters.length >= rate && letters;
    }, { timeoutMs: 60_000, intervalMs: 1_000, what: 'dead letters before the restart' });

    await faultService('down', 'postgres');
    await sleep(downMs);
    await faultService('up', 'postgres');

    const report = await settle(load, receiver, { timeoutMs: 120_000 });
    const acked = new Set(load.acked);
    const letters = await waitFor(async () => {
      const all = ours(await listDeadLetters(pipeline.env, 'refuse'));
      return [...acked].every((id) => all.some((l) => l.messageId === id)) && all;
    }, { timeoutMs: 120_000, intervalMs: 2_000, what: 'a dead letter for every acknowledged event' }).catch(async () => ours(await listDeadLetters(pipeline.env, 'refuse')));
    const lettered = new Set(letters.map((l) => l.messageId));
    const beforeKept = before.filter((l) => lettered.has(l.messageId)).length;
    const missingLetters = [...acked].filter((id) => !lettered.has(id));
    expectGuarantees(
      `postgres restart at ${rate}/s`,
      report,
      { maxDuplicates: 0, why: 'Postgres holds no delivery state of the webhook path' },
      `dead letters: ${before.length} before the restart (${beforeKept} still listed), ${lettered.size} after, ${letters.length - lettered.size} repeated, ${missingLetters.length} acked events without one`,
    );
    expect(beforeKept, 'dead letters written before the restart are still listed').toBe(before.length);
    expect(missingLetters.slice(0, 10), 'every acknowledged event was dead-lettered at the refusing destination').toEqual([]);
    expect(letters.every((l) => l.httpStatus === 400)).toBe(true);
  }, 420_000);
});
