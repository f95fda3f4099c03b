import { afterAll, describe, expect, it } from 'vitest';
import type { Bus } from '../../core/bus/types.ts';
import { OrreryError } from '../../core/errors.ts';
import { serviceCtl, uniqueName, waitFor } from '../helpers/index.ts';
import { kafkaClients } from '../helpers/kafka-clients.ts';

/**
 * Stops the real Kafka in the middle of a produce loop. The adapter must report a
 * retriable error, and every message it acknowledged must be on the topic after Kafka
 * is back. This file stops the shared Kafka (once per client), so integration files run
 * one at a time.
 */
describe.each(kafkaClients)('$label bus: Kafka stops mid-produce', ({ create }) => {
  const buses: Bus[] = [];
  afterAll(async () => {
    await serviceCtl('up', 'kafka');
    await Promise.all(buses.map((b) => b.close()));
  });

  function bus(): Bus {
    const b = create('orrery-outage', {
      // Fail fast while Kafka is down, as a caller with a deadline (ingest) would.
      retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 500 },
      requestTimeoutMs: 3_000,
      connectionTimeoutMs: 1_000,
    });
    buses.push(b);
    return b;
  }

  it('reports a retriable BUS_UNAVAILABLE and loses nothing it acknowledged', async () => {
    const producer = bus();
    const topic = uniqueName('outage');
    await producer.ensureTopics([{ topic, numPartitions: 3, replicationFactor: 1 }]);

    const acked = new Set<string>();
    const errors: unknown[] = [];
    let n = 0;
    let stopped = false;
    // Concurrent calls, as ingest makes them: several in flight at each moment.
    const loop = (async () => {
      while (errors.length < 3) {
        const batch = Array.from({ length: 4 }, () => `m${n++}`);
        await Promise.all(
          batch.map((id) =>
            producer.produce(topic, [{ key: `user-${id.length % 5}`, value: id }]).then(
              () => acked.add(id),
              (err: unknown) => errors.push(err),
            ),
          ),
        );
        if (!stopped && acked.size >= 200) {
          stopped = true;
          void serviceCtl('down', 'kafka');
        }
      }
    })();
    await loop;

    expect(acked.size).toBeGreaterThanOrEqual(200);
    for (const err of errors) {
      expect(err, String((err as Error).cause ?? err)).toBeInstanceOf(OrreryError);
      expect(err, `${(err as Error).message} / cause: ${(err as { cause?: { name?: string } }).cause?.name}`).toMatchObject({ code: 'BUS_UNAVAILABLE', retriable: true });
    }

    await serviceCtl('up', 'kafka');
    // The same adapter recovers: a write after the restart succeeds.
    await waitFor(
      () =>
        producer.produce(topic, [{ key: 'after', value: 'after-restart' }]).then(
          () => true,
          () => false,
        ),
      { timeoutMs: 60_000, intervalMs: 500, what: 'a produce after the restart' },
    );

    const seen = new Set<string>();
    const consumer = bus();
    await consumer.consume({
      group: uniqueName('outage'),
      topics: [topic],
      fromBeginning: true,
      handle: async (batch) => {
        for (const m of batch.messages) seen.add(m.value!.toString());
      },
    });
    await waitFor(() => seen.has('after-restart') && [...acked].every((id) => seen.has(id)), {
      timeoutMs: 60_000,
      what: `all ${acked.size} acknowledged messages`,
    });
    const lost = [...acked].filter((id) => !seen.has(id));
    expect(lost).toEqual([]);
  });
});
