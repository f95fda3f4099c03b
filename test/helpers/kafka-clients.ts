import { createKafkaBus } from '../../core/bus/kafka.ts';
import type { KafkaClientOptions } from '../../core/bus/kafka-common.ts';
import { createPlatformaticBus, type RetrySettings } from '../../core/bus/platformatic.ts';
import type { Bus } from '../../core/bus/types.ts';
import { serviceEnv, testLogger } from './index.ts';

export type KafkaBusExtra = Partial<Omit<KafkaClientOptions, 'brokers' | 'clientId' | 'logger'>> & { retry?: RetrySettings };

/**
 * Both Kafka clients the bus can use (core/config.ts `kafka.client`), on the real Kafka, with
 * the same options: tests that hold for either run over this list.
 */
export const kafkaClients: Array<{ client: 'kafkajs' | 'platformatic'; label: string; create: (clientId: string, extra?: KafkaBusExtra) => Bus }> = [
  {
    client: 'kafkajs',
    label: 'kafka',
    create: (clientId, extra = {}) =>
      createKafkaBus({ brokers: serviceEnv('KAFKA_BROKERS').split(','), clientId, logger: testLogger(), retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000 }, ...extra }),
  },
  {
    client: 'platformatic',
    label: 'kafka (@platformatic/kafka)',
    create: (clientId, extra = {}) =>
      createPlatformaticBus({ brokers: serviceEnv('KAFKA_BROKERS').split(','), clientId, logger: testLogger(), retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000 }, ...extra }),
  },
];
