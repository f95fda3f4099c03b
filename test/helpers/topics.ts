import { createKafkaBus } from '../../core/bus/kafka.ts';
import type { Bus, IncomingMessage, Subscription } from '../../core/bus/types.ts';
import { serviceEnv, testLogger, uniqueName, waitFor } from './index.ts';

/**
 * Records everything that arrives on some topics, from their beginning, with a consumer
 * group of its own. For tests that check what a stage wrote.
 */
export async function recordTopics(bus: Bus, topics: string[]): Promise<{ messages: Map<string, IncomingMessage[]>; sub: Subscription }> {
  const messages = new Map<string, IncomingMessage[]>(topics.map((t) => [t, []]));
  // A topic created a moment ago may not have a leader yet on every broker connection:
  // subscribing then fails with a retriable error, so try again for a while.
  const sub = await waitFor(() => bus.consume({
    group: uniqueName('recorder'),
    topics,
    fromBeginning: true,
    handle: async (batch) => {
      messages.get(batch.topic)!.push(...batch.messages);
    },
  }), { timeoutMs: 30_000, intervalMs: 500, what: `a subscription to ${topics.join(', ')}` });
  return { messages, sub };
}

export function testBus(clientId: string): Bus {
  return createKafkaBus({ brokers: serviceEnv('KAFKA_BROKERS').split(','), clientId, logger: testLogger() });
}
