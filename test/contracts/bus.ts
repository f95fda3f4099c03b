import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stalledPartitions } from '../../core/bus/progress.ts';
import { OrreryError } from '../../core/errors.ts';
import type { Bus, IncomingMessage, Subscription } from '../../core/bus/types.ts';
import { uniqueName, waitFor } from '../helpers/index.ts';

/**
 * The contract every bus adapter keeps. Each test works on its own topics and groups.
 * `makeBus` is called once per suite; the suite closes the bus at the end.
 */
export function busContract(name: string, makeBus: () => Promise<Bus>): void {
  describe(`bus contract: ${name}`, () => {
    let bus: Bus;
    const subs: Subscription[] = [];

    beforeAll(async () => {
      bus = await makeBus();
    });
    afterAll(async () => {
      await Promise.all(subs.map((s) => s.stop()));
      await bus.close();
    });

    async function topic(partitions = 3): Promise<string> {
      const t = uniqueName('contract');
      await bus.ensureTopics([{ topic: t, numPartitions: partitions, replicationFactor: 1 }]);
      return t;
    }

    async function collect(t: string, group = uniqueName('g')): Promise<{ got: IncomingMessage[]; sub: Subscription }> {
      const got: IncomingMessage[] = [];
      const sub = await bus.consume({
        group,
        topics: [t],
        fromBeginning: true,
        handle: async (batch) => {
          got.push(...batch.messages);
        },
      });
      subs.push(sub);
      return { got, sub };
    }

    it('answers ping', async () => {
      expect(await bus.ping()).toBe(true);
    });

    it('ensureTopics creates missing topics and leaves existing ones alone', async () => {
      const t = await topic(2);
      await bus.ensureTopics([{ topic: t, numPartitions: 2, replicationFactor: 1 }]);
      await bus.produce(t, [{ key: 'k', value: 'v' }]);
      const { got } = await collect(t);
      await waitFor(() => got.length === 1, { what: 'one message' });
      expect(got[0]!.value!.toString()).toBe('v');
    });

    it('delivers what was produced, with keys, values and headers', async () => {
      const t = await topic();
      await bus.produce(t, [
        { key: 'a', value: Buffer.from('{"n":1}'), headers: { 'x-reason': 'test' } },
        { key: null, value: 'plain' },
      ]);
      const { got } = await collect(t);
      await waitFor(() => got.length === 2, { what: 'two messages' });
      const byValue = new Map(got.map((m) => [m.value!.toString(), m]));
      expect(byValue.get('{"n":1}')!.key).toBe('a');
      expect(byValue.get('{"n":1}')!.headers['x-reason']).toBe('test');
      expect(byValue.get('plain')!.key).toBeNull();
      expect(typeof byValue.get('plain')!.offset).toBe('string');
    });

    it('keeps the order of each key across concurrent produce calls', async () => {
      const t = await topic(4);
      const keys = Array.from({ length: 8 }, (_, i) => `user-${i}`);
      const calls: Promise<void>[] = [];
      // Sequential per key (each call awaits the previous one for that key), concurrent across keys.
      for (const key of keys) {
        calls.push(
          (async () => {
            for (let n = 0; n < 25; n++) await bus.produce(t, [{ key, value: `${key}:${n}` }]);
          })(),
        );
      }
      await Promise.all(calls);
      const { got } = await collect(t);
      await waitFor(() => got.length === keys.length * 25, { what: 'all messages' });
      for (const key of keys) {
        const seq = got.filter((m) => m.key === key).map((m) => Number(m.value!.toString().split(':')[1]));
        expect(seq).toEqual(Array.from({ length: 25 }, (_, i) => i));
      }
      // One key always lands on one partition.
      for (const key of keys) expect(new Set(got.filter((m) => m.key === key).map((m) => m.partition)).size).toBe(1);
    });

    it('takes one produce call larger than a broker request (3 MB on one key), in order', async () => {
      const t = await topic(1);
      const big = 'x'.repeat(30 * 1024);
      const messages = Array.from({ length: 100 }, (_, i) => ({ key: 'one-user', value: `${i}:${big}` }));
      await bus.produce(t, messages);
      const { got } = await collect(t);
      await waitFor(() => got.length === 100, { what: '100 large messages' });
      expect(got.map((m) => Number(m.value!.toString().split(':')[0]))).toEqual(Array.from({ length: 100 }, (_, i) => i));
    });

    it('redelivers a batch whose handler failed, and commits once it succeeds', async () => {
      const t = await topic(1);
      await bus.produce(t, [1, 2, 3].map((n) => ({ key: 'k', value: String(n) })));
      const group = uniqueName('g');
      const seen: string[] = [];
      let failures = 0;
      const sub = await bus.consume({
        group,
        topics: [t],
        fromBeginning: true,
        handle: async (batch) => {
          if (failures === 0) {
            failures++;
            throw new Error('handler failed once');
          }
          seen.push(...batch.messages.map((m) => m.value!.toString()));
        },
        onError: () => {},
      });
      await waitFor(() => seen.length >= 3, { what: 'redelivery', timeoutMs: 60_000 });
      expect(failures).toBe(1);
      expect(seen.slice(0, 3)).toEqual(['1', '2', '3']);
      await sub.stop();

      // A new member of the same group starts after the committed offsets.
      await bus.produce(t, [{ key: 'k', value: '4' }]);
      const again: string[] = [];
      const sub2 = await bus.consume({
        group,
        topics: [t],
        fromBeginning: true,
        handle: async (batch) => {
          again.push(...batch.messages.map((m) => m.value!.toString()));
        },
      });
      subs.push(sub2);
      await waitFor(() => again.length >= 1, { what: 'message after commit' });
      expect(again).toEqual(['4']);
    });

    it('commits every partition of batches handled at once', async () => {
      const t = await topic(3);
      const keys = Array.from({ length: 12 }, (_, i) => `key-${i}`);
      await bus.produce(t, keys.map((key) => ({ key, value: `first:${key}` })));
      const group = uniqueName('g');
      const seen = new Set<string>();
      const partitions = new Set<number>();
      const sub = await bus.consume({
        group,
        topics: [t],
        fromBeginning: true,
        concurrency: 3,
        handle: async (batch) => {
          partitions.add(batch.partition);
          for (const m of batch.messages) seen.add(m.value!.toString());
        },
      });
      await waitFor(() => seen.size >= keys.length, { what: 'the first messages' });
      expect(partitions.size).toBeGreaterThan(1);
      await sub.stop();

      // A new member of the group starts after every partition's committed offset.
      await bus.produce(t, keys.map((key) => ({ key, value: `second:${key}` })));
      const again: string[] = [];
      const sub2 = await bus.consume({
        group,
        topics: [t],
        fromBeginning: true,
        concurrency: 3,
        handle: async (batch) => {
          again.push(...batch.messages.map((m) => m.value!.toString()));
        },
      });
      subs.push(sub2);
      await waitFor(() => again.length >= keys.length, { what: 'the second messages' });
      await new Promise((r) => setTimeout(r, 200));
      expect(again.sort()).toEqual(keys.map((key) => `second:${key}`).sort());
    });

    it('progress() shows a partition whose batch fails every time, and forgets it once the batch goes through', async () => {
      const t = await topic(1);
      await bus.produce(t, [{ key: 'k', value: 'refused' }]);
      let refuse = true;
      const handled: string[] = [];
      const sub = await bus.consume({
        group: uniqueName('g'),
        topics: [t],
        fromBeginning: true,
        handle: async (b) => {
          // Not retriable, as when Kafka refuses a write for good: the batch is read again all the same.
          if (refuse) throw new OrreryError('BUS_PRODUCE_REJECTED', 'the destination refused the write', { retriable: false });
          handled.push(...b.messages.map((m) => m.value!.toString()));
        },
      });
      subs.push(sub);
      const failing = await waitFor(() => sub.progress().failing.find((f) => f.failures >= 3), { what: 'three failures of the same batch' });
      expect(failing).toMatchObject({ topic: t, partition: 0, offset: '0', error: 'the destination refused the write' });
      expect(stalledPartitions(sub.progress(), { afterMs: 0 }, Date.now())).toHaveLength(1);

      refuse = false;
      await waitFor(() => handled.length === 1, { timeoutMs: 30_000, what: 'the batch handled once the handler stops throwing' });
      await waitFor(() => sub.progress().failing.length === 0, { what: 'the failure forgotten' });
      expect(stalledPartitions(sub.progress(), { afterMs: 0 }, Date.now())).toEqual([]);
    });

    it('stop() lets the in-flight batch finish and commit', async () => {
      const t = await topic(1);
      await bus.produce(t, [{ key: 'k', value: 'slow' }]);
      const group = uniqueName('g');
      let started!: () => void;
      const inHandler = new Promise<void>((r) => (started = r));
      let finished = false;
      const sub = await bus.consume({
        group,
        topics: [t],
        fromBeginning: true,
        handle: async () => {
          started();
          await new Promise((r) => setTimeout(r, 500));
          finished = true;
        },
      });
      await inHandler;
      await sub.stop();
      expect(finished).toBe(true);

      await bus.produce(t, [{ key: 'k', value: 'after' }]);
      const after: string[] = [];
      const sub2 = await bus.consume({
        group,
        topics: [t],
        fromBeginning: true,
        handle: async (b) => {
          after.push(...b.messages.map((m) => m.value!.toString()));
        },
      });
      subs.push(sub2);
      await waitFor(() => after.length >= 1, { what: 'next message' });
      expect(after).toEqual(['after']);
    });
  });
}
