import { afterAll, describe, expect, it } from 'vitest';
import { createKafkaBus, type KafkaBusOptions } from '../../core/bus/kafka.ts';
import type { Bus } from '../../core/bus/types.ts';
import type { OrreryError } from '../../core/errors.ts';
import { busContract } from '../contracts/bus.ts';
import { serviceEnv, testLogger, uniqueName } from '../helpers/index.ts';

function kafkaBus(clientId: string, extra: Partial<KafkaBusOptions> = {}) {
  return async () =>
    createKafkaBus({
      brokers: serviceEnv('KAFKA_BROKERS').split(','),
      clientId,
      logger: testLogger(),
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000 },
      ...extra,
    });
}

busContract('kafka', kafkaBus('orrery-contract'));
// As `orrery start` configures it (core/config.ts): a 5 ms linger, fetches of 16 KiB or 20 ms.
busContract('kafka, linger and fetch batching', kafkaBus('orrery-contract-tuned', { lingerMs: 5, fetchMinBytes: 16 * 1024, fetchMaxWaitMs: 20 }));

describe('kafka bus: request sizes on topics with the broker defaults (max.message.bytes 1 MiB)', () => {
  const buses: Bus[] = [];
  afterAll(async () => {
    await Promise.all(buses.map((b) => b.close()));
  });
  async function setup(): Promise<{ bus: Bus; topic: string }> {
    const bus = await kafkaBus('orrery-bus-sizes')();
    buses.push(bus);
    const topic = uniqueName('sizes');
    // One partition: every message of a call lands in one record batch, as a router's
    // outputs for one raw partition do.
    await bus.ensureTopics([{ topic, numPartitions: 1, replicationFactor: 1 }]);
    return { bus, topic };
  }

  it('a call whose headers outweigh its values is split by its real size, and all of it is written', async () => {
    const { bus, topic } = await setup();
    // ~600 KiB of values, ~1.9 MiB with the headers: one request before the fix, refused.
    const messages = Array.from({ length: 3_000 }, (_, i) => ({
      key: 'ghost:u1',
      value: `{"messageId":"m-${i}","filler":"${'x'.repeat(180)}"}`,
      headers: { 'x-orrery-reason': 'unknown_source', 'x-orrery-error': 'e'.repeat(600) },
    }));
    await bus.produce(topic, messages);
    expect(await bus.lag!(uniqueName('nobody'), topic)).toBe(messages.length);
  });

  it('a record over the limit alone is refused before sending, and a call queued with it is written', async () => {
    const { bus, topic } = await setup();
    const [big, small] = await Promise.allSettled([
      bus.produce(topic, [{ key: 'k', value: 'ok' }, { key: 'k', value: Buffer.alloc(1_100_000, 1) }]),
      bus.produce(topic, [{ key: 'k', value: 'fine' }]),
    ]);
    expect(big.status).toBe('rejected');
    const err = (big as PromiseRejectedResult).reason as OrreryError;
    expect(err).toMatchObject({ code: 'BUS_RECORD_TOO_LARGE', retriable: false, details: { topic, indexes: [1] } });
    expect(small.status).toBe('fulfilled');
    // Nothing of the refused call was written: it is all or nothing for its caller.
    expect(await bus.lag!(uniqueName('nobody'), topic)).toBe(1);
  });
});
