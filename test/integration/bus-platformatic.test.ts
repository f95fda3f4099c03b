import { afterAll, describe, expect, it } from 'vitest';
import { createKafkaBus } from '../../core/bus/kafka.ts';
import { createPlatformaticBus, type PlatformaticBusOptions } from '../../core/bus/platformatic.ts';
import type { Bus, IncomingMessage } from '../../core/bus/types.ts';
import type { OrreryError } from '../../core/errors.ts';
import { busContract } from '../contracts/bus.ts';
import { serviceEnv, testLogger, uniqueName, waitFor } from '../helpers/index.ts';

/** The Kafka bus on @platformatic/kafka (issue #18), against the real Kafka. */
function platformaticBus(clientId: string, extra: Partial<PlatformaticBusOptions> = {}) {
  return async () =>
    createPlatformaticBus({
      brokers: serviceEnv('KAFKA_BROKERS').split(','),
      clientId,
      logger: testLogger(),
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000 },
      ...extra,
    });
}

busContract('kafka (@platformatic/kafka)', platformaticBus('orrery-contract-plt'));
// As `orrery start` configures it (core/config.ts): a 5 ms linger, fetches of 16 KiB or 20 ms.
busContract(
  'kafka (@platformatic/kafka), linger and fetch batching',
  platformaticBus('orrery-contract-plt-tuned', { lingerMs: 5, fetchMinBytes: 16 * 1024, fetchMaxWaitMs: 20 }),
);

describe('kafka bus on @platformatic/kafka: request sizes and the switch from kafkajs', () => {
  const buses: Bus[] = [];
  afterAll(async () => {
    await Promise.all(buses.map((b) => b.close()));
  });
  async function setup(partitions = 1): Promise<{ bus: Bus; topic: string }> {
    const bus = await platformaticBus('orrery-bus-sizes-plt')();
    buses.push(bus);
    const topic = uniqueName('sizes');
    await bus.ensureTopics([{ topic, numPartitions: partitions, replicationFactor: 1 }]);
    return { bus, topic };
  }

  it('a call whose headers outweigh its values is split by its real size, and all of it is written', async () => {
    const { bus, topic } = await setup();
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
    expect(await bus.lag!(uniqueName('nobody'), topic)).toBe(1);
  });

  it('a write Kafka refuses for good is a non-retriable BUS_PRODUCE_REJECTED', async () => {
    // The topic takes 16 KiB batches while the adapter believes in the broker default: the
    // broker refuses the batch (MESSAGE_TOO_LARGE), which retrying cannot fix.
    const bus = await platformaticBus('orrery-bus-refused-plt')();
    buses.push(bus);
    const topic = uniqueName('refused');
    await bus.ensureTopics([{ topic, numPartitions: 1, replicationFactor: 1, configEntries: [{ name: 'max.message.bytes', value: String(16 * 1024) }] }]);
    const err = (await bus.produce(topic, [{ key: 'k', value: Buffer.alloc(64 * 1024, 1) }]).then(
      () => undefined,
      (e: unknown) => e,
    )) as OrreryError;
    expect(err).toMatchObject({ code: 'BUS_PRODUCE_REJECTED', retriable: false });
  });

  it('a key lands on the same partition through kafkajs and @platformatic/kafka (murmur2, Java-compatible)', async () => {
    // 6 partitions, the config's default: a partitioner differing in the sign mask (the
    // library's own default) moves about half of the keys.
    const { bus, topic } = await setup(6);
    const kafkajs = createKafkaBus({ brokers: serviceEnv('KAFKA_BROKERS').split(','), clientId: 'orrery-partitioner-kjs', logger: testLogger() });
    buses.push(kafkajs);
    const keys = Array.from({ length: 200 }, (_, i) => `src-${i % 7}:user-${i}-${'é'.repeat(i % 3)}`);
    await bus.produce(topic, keys.map((key) => ({ key, value: 'platformatic' })));
    await kafkajs.produce(topic, keys.map((key) => ({ key, value: 'kafkajs' })));
    const got: IncomingMessage[] = [];
    await bus.consume({
      group: uniqueName('g'),
      topics: [topic],
      fromBeginning: true,
      handle: async (b) => {
        got.push(...b.messages);
      },
    });
    await waitFor(() => got.length === keys.length * 2, { what: 'both clients\' messages', timeoutMs: 30_000 });
    const where = (client: string) => new Map(got.filter((m) => m.value!.toString() === client).map((m) => [m.key, m.partition]));
    const viaPlatformatic = where('platformatic');
    const viaKafkajs = where('kafkajs');
    expect(new Set(viaKafkajs.values()).size).toBeGreaterThan(3);
    const moved = keys.filter((k) => viaPlatformatic.get(k) !== viaKafkajs.get(k));
    expect(moved).toEqual([]);
  });
});
