import { afterAll, describe, expect, it } from 'vitest';
import type { Bus, IncomingMessage } from '../../core/bus/types.ts';
import type { OrreryError } from '../../core/errors.ts';
import { busContract } from '../contracts/bus.ts';
import { uniqueName, waitFor } from '../helpers/index.ts';
import { kafkaClients as clients } from '../helpers/kafka-clients.ts';

for (const client of clients) {
  busContract(client.label, async () => client.create('orrery-contract'));
  // As `orrery start` configures it (core/config.ts): a 5 ms linger, fetches of 16 KiB or 20 ms.
  busContract(`${client.label}, linger and fetch batching`, async () =>
    client.create('orrery-contract-tuned', { lingerMs: 5, fetchMinBytes: 16 * 1024, fetchMaxWaitMs: 20 }),
  );

  describe(`${client.label} bus: request sizes on topics with the broker defaults (max.message.bytes 1 MiB)`, () => {
    const buses: Bus[] = [];
    afterAll(async () => {
      await Promise.all(buses.map((b) => b.close()));
    });
    async function setup(configEntries?: Array<{ name: string; value: string }>): Promise<{ bus: Bus; topic: string }> {
      const bus = client.create('orrery-bus-sizes');
      buses.push(bus);
      const topic = uniqueName('sizes');
      // One partition: every message of a call lands in one record batch, as a router's
      // outputs for one raw partition do.
      await bus.ensureTopics([{ topic, numPartitions: 1, replicationFactor: 1, ...(configEntries ? { configEntries } : {}) }]);
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

    it('a write the broker refuses for good is a non-retriable BUS_PRODUCE_REJECTED', async () => {
      // The topic takes 16 KiB batches while the adapter assumes the broker default: the broker
      // refuses the batch (MESSAGE_TOO_LARGE), which no retry can fix.
      const { bus, topic } = await setup([{ name: 'max.message.bytes', value: String(16 * 1024) }]);
      const err = await bus.produce(topic, [{ key: 'k', value: Buffer.alloc(64 * 1024, 1) }]).then(
        () => undefined,
        (e: unknown) => e as OrreryError,
      );
      expect(err).toMatchObject({ code: 'BUS_PRODUCE_REJECTED', retriable: false });
    });
  });
}

describe('kafka bus: switching between kafkajs and @platformatic/kafka', () => {
  const buses: Bus[] = [];
  afterAll(async () => {
    await Promise.all(buses.map((b) => b.close()));
  });

  it('a key lands on the same partition through either client (murmur2, Java-compatible)', async () => {
    const [kafkajs, platformatic] = clients.map((c) => c.create('orrery-partitioner'));
    buses.push(kafkajs!, platformatic!);
    const topic = uniqueName('partitioner');
    // 6 partitions, the config's default: a partitioner that differs only in the sign mask
    // (the library's own default) moves about half of the keys.
    await platformatic!.ensureTopics([{ topic, numPartitions: 6, replicationFactor: 1 }]);
    const keys = Array.from({ length: 200 }, (_, i) => `src-${i % 7}:user-${i}-${'é'.repeat(i % 3)}`);
    await platformatic!.produce(topic, keys.map((key) => ({ key, value: 'platformatic' })));
    await kafkajs!.produce(topic, keys.map((key) => ({ key, value: 'kafkajs' })));
    const got: IncomingMessage[] = [];
    await kafkajs!.consume({
      group: uniqueName('g'),
      topics: [topic],
      fromBeginning: true,
      handle: async (b) => {
        got.push(...b.messages);
      },
    });
    await waitFor(() => got.length === keys.length * 2, { what: "both clients' messages", timeoutMs: 30_000 });
    const where = (value: string) => new Map(got.filter((m) => m.value!.toString() === value).map((m) => [m.key, m.partition]));
    const [viaPlatformatic, viaKafkajs] = [where('platformatic'), where('kafkajs')];
    expect(new Set(viaKafkajs.values()).size).toBeGreaterThan(3);
    expect(keys.filter((k) => viaPlatformatic.get(k) !== viaKafkajs.get(k))).toEqual([]);
  });
});
