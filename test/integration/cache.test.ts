import { createMemoryCache } from '../../core/cache/memory.ts';
import { createRedisCache } from '../../core/cache/redis.ts';
import { cacheContract } from '../contracts/cache.ts';
import { serviceEnv, uniqueName } from '../helpers/index.ts';

cacheContract('redis', async () => createRedisCache({ url: serviceEnv('REDIS_URL'), keyPrefix: `${uniqueName('t')}:` }));
cacheContract('memory', async () => createMemoryCache());
