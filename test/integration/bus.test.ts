import { createKafkaBus, type KafkaBusOptions } from '../../core/bus/kafka.ts';
import { busContract } from '../contracts/bus.ts';
import { serviceEnv, testLogger } from '../helpers/index.ts';

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
