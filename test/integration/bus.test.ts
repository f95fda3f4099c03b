import { createKafkaBus } from '../../core/bus/kafka.ts';
import { busContract } from '../contracts/bus.ts';
import { serviceEnv, testLogger } from '../helpers/index.ts';

busContract('kafka', async () =>
  createKafkaBus({
    brokers: serviceEnv('KAFKA_BROKERS').split(','),
    clientId: 'orrery-contract',
    logger: testLogger(),
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000 },
  }),
);
