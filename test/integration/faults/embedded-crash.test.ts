import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';
import { waitFor } from '../../helpers/index.ts';
import { startOrrery, type OrreryProcess } from '../../helpers/process.ts';
import { deliveries, expectGuarantees, faultEnv, FAULT_WRITE_KEY, pipelineConfig, settle, startLoad, startReceiver } from '../../helpers/faults.ts';

/**
 * Fault suite, case 5 (issue #15): the embedded default (no KAFKA_BROKERS, DATABASE_URL or
 * REDIS_URL: the log, the store and the marks in SQLite under the data dir), `orrery start` with a config file,
 * killed with kill -9 under load and restarted on its data dir. Nothing acknowledged is
 * lost; the duplicates are counted.
 */
describe('fault: kill -9 of the embedded default under load', () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const c of closers.splice(0)) await c();
  });

  const rate = faultEnv.rate(200);
  it(`kill -9 of orrery start (embedded) at ${rate} events/s: nothing acknowledged lost, order kept`, async () => {
    const receiver = await startReceiver();
    closers.push(receiver.close);
    const dir = await mkdtemp(join(tmpdir(), 'orrery-fault-embedded-'));
    await writeFile(join(dir, 'orrery.yaml'), pipelineConfig(receiver.url));
    const env = { ORRERY_CONFIG: join(dir, 'orrery.yaml'), ORRERY_DATA_DIR: join(dir, 'data') };
    const without = ['KAFKA_BROKERS', 'DATABASE_URL', 'REDIS_URL', 'KUBECONFIG'];
    let orrery: OrreryProcess = await startOrrery(['start'], env, { without });
    closers.push(() => orrery.stop());

    const count = rate * faultEnv.seconds(20);
    const load = startLoad({ url: () => orrery.url, writeKey: FAULT_WRITE_KEY, rate, count, users: faultEnv.users() });
    await waitFor(() => load.sent() >= count / 3 && deliveries(receiver).some((d) => String(d.messageId).startsWith(load.tag)), {
      timeoutMs: 60_000,
      what: 'load and deliveries under way',
    });
    const deliveredBefore = deliveries(receiver).length;
    const port = orrery.port;
    await orrery.kill();
    orrery = await startOrrery(['start'], env, { without, port });

    const report = await settle(load, receiver, { timeoutMs: 120_000 });
    // The delivered marks are in SQLite, committed before the offsets they cover move on: a
    // restart repeats only the batches in flight at the kill (posted, the answer not yet
    // recorded), up to sinks.concurrency of them; bounded here by what had been delivered
    // before the kill.
    expectGuarantees(`kill -9 embedded at ${rate}/s`, report, { maxDuplicates: deliveredBefore, why: 'at most the events delivered before the kill' }, `${deliveredBefore} delivered before the kill, ${load.failed()} refused while down`);
  }, 300_000);
});
