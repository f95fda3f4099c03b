import { afterAll, describe, expect, it } from 'vitest';
import { updateControlPlane } from '../../../core/control-plane-pg.ts';
import { createPgStore } from '../../../core/store/pg.ts';
import { serviceEnv, waitFor } from '../../helpers/index.ts';
import {
  expectGuarantees,
  faultEnv,
  faultService,
  listDeadLetters,
  settle,
  sleep,
  startFaultRun,
  startReceiver,
} from '../../helpers/faults.ts';

/**
 * Fault suite, case 6 (issue #15): the Postgres store restarts under load. Beside the
 * healthy webhook, a second destination refuses every call with 400, which makes dead
 * letters. Those written before the restart are still listed after it, more are written
 * after it, the healthy destination gets every acknowledged event, in order, and a
 * control-plane change made after the restart reaches the running ingest.
 */
describe('fault: Postgres restarted under load', () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    await faultService('up', 'postgres');
    for (const c of closers.splice(0)) await c();
  });

  const rate = faultEnv.rate(200);
  const downMs = faultEnv.ms('PG_DOWN', 10_000);
  it(`Postgres restarted (down ${downMs / 1000} s) at ${rate} events/s: dead letters and the control plane survive`, async () => {
    const refusing = await startReceiver({ respond: () => 400 });
    closers.push(refusing.close);
    const count = Math.round(rate * (faultEnv.seconds(10) + downMs / 1000 + 10));
    const { receiver, pipeline, load } = await startFaultRun({
      rate,
      count,
      closers,
      pipeline: {
        extraDestinations: `  - { id: refuse, type: webhook, url: "${refusing.url}", allowPrivateNetwork: true, batch: true }`,
        extraRoutes: '  - { source: web, destination: refuse }',
        // The breaker opens on the refusals too; a short cooldown keeps dead letters coming.
        env: { SINKS_BREAKER_COOLDOWN_MS: '1000' },
      },
    });
    const ours = (letters: Array<{ messageId: string; httpStatus?: number }>) => letters.filter((l) => l.messageId.startsWith(`${load.tag}-`));
    const before = await waitFor(async () => {
      const letters = ours(await listDeadLetters(pipeline.env, 'refuse'));
      return letters.length >= 2 && letters;
    }, { timeoutMs: 60_000, intervalMs: 1_000, what: 'dead letters before the restart' });

    await faultService('down', 'postgres');
    await sleep(downMs);
    await faultService('up', 'postgres');

    const report = await settle(load, receiver, { timeoutMs: 120_000 });
    // Dead letters go on being written after the restart: the sinks reconnected to the store.
    const letters = await waitFor(async () => {
      const all = ours(await listDeadLetters(pipeline.env, 'refuse'));
      return all.length > before.length && all;
    }, { timeoutMs: 60_000, intervalMs: 1_000, what: 'dead letters written after the restart' }).catch(async () => ours(await listDeadLetters(pipeline.env, 'refuse')));
    const listed = new Set(letters.map((l) => l.messageId));
    const beforeKept = before.filter((l) => listed.has(l.messageId)).length;
    expectGuarantees(
      `postgres restart at ${rate}/s`,
      report,
      { maxDuplicates: 0, why: 'Postgres holds no delivery state of the webhook path' },
      `dead letters at the 400 destination: ${before.length} before the restart (${beforeKept} still listed after), ${letters.length} after`,
    );
    expect(beforeKept, 'dead letters written before the restart are still listed').toBe(before.length);
    expect(letters.length, 'dead letters written after the restart').toBeGreaterThan(before.length);
    expect(letters.every((l) => l.httpStatus === 400)).toBe(true);

    // The control plane survived, and its live changes still reach the running processes
    // (their LISTEN connections were cut by the restart): a write key added now is taken.
    const store = createPgStore({ url: serviceEnv('DATABASE_URL'), schema: pipeline.env.DATABASE_SCHEMA! });
    try {
      await updateControlPlane(store, (doc) => ({
        ...doc,
        sources: doc.sources.map((src) => (src.id === 'web' ? { ...src, writeKeys: [...src.writeKeys, 'fault-key-after-restart'] } : src)),
      }));
    } finally {
      await store.close();
    }
    await waitFor(
      async () => {
        const res = await fetch(`${pipeline.ingestUrl()}/v1/track`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Basic ${btoa('fault-key-after-restart:')}` },
          body: JSON.stringify({ userId: 'after-restart', event: 'Key Check' }),
        });
        return res.ok;
      },
      { timeoutMs: 30_000, intervalMs: 500, what: 'ingest to take a write key added after the restart' },
    );
  }, 420_000);
});
