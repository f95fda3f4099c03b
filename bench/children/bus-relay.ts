import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import type { Bus } from '../../core/bus/types.ts';
import { childConfig, onStop, serveCommands } from '../lib/child.ts';

/**
 * Baseline for the router on a client other than kafkajs: a consume → produce relay on
 * Orrery's own bus adapter for that client, set up as the router sets up its bus (the same
 * options, 3 partitions at once, offsets committed after the batch's produce is
 * acknowledged). Each message is copied as it is, same key, same value: no parse, no
 * dedup, no routing, no re-encode. So the router's ratio to it is the cost of routing
 * alone on that client. (The kafkajs baseline stays the bare-library relay in
 * kafka-relay.ts, as in the runs before this one.)
 */
interface Config {
  brokers: string;
  from: string;
  to: string;
  group: string;
  client: 'kafkajs' | 'platformatic';
}
const cfg = childConfig<Config>();
// The kafka section as `orrery start router` parses it from defaults: linger, fetch sizes, limits.
const { lingerMs, fetchMinBytes, fetchMaxWaitMs, maxMessageBytes } = loadConfig({ env: { KAFKA_BROKERS: cfg.brokers } }).kafka;
const options = { brokers: cfg.brokers.split(','), clientId: 'bench-bus-relay', logger: createLogger({ level: 'warn' }), lingerMs, fetchMinBytes, fetchMaxWaitMs, maxBatchBytes: maxMessageBytes };
const bus: Bus =
  cfg.client === 'platformatic' ? (await import('../../core/bus/platformatic.ts')).createPlatformaticBus(options) : (await import('../../core/bus/kafka.ts')).createKafkaBus(options);
let relayed = 0;
const sub = await bus.consume({
  group: cfg.group,
  topics: [cfg.from],
  fromBeginning: true,
  concurrency: 3,
  handle: async (batch) => {
    await bus.produce(
      cfg.to,
      batch.messages.map((m) => ({ key: m.key, value: m.value ?? '' })),
    );
    relayed += batch.messages.length;
  },
});
serveCommands({ pid: process.pid }, (c) => {
  if (c.cmd === 'stats') return { relayed };
  throw new Error(`unknown command ${c.cmd}`);
});
onStop(async () => {
  await sub.stop();
  await bus.close();
});
