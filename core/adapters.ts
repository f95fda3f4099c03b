import { join } from 'node:path';
import type { Bus } from './bus/types.ts';
import type { Cache } from './cache/types.ts';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import { redactUrl } from './logger.ts';
import type { Store } from './store/types.ts';

/** The embedded default's SQLite file under the data dir: the bus's log and the cache's marks. */
export const EMBEDDED_FILE = 'orrery.sqlite';

export interface Adapters {
  bus: Bus;
  /** Always set by createAdapters (pg, or the embedded PGlite); tests may leave it out. */
  store: Store | undefined;
  cache: Cache;
  close(): Promise<void>;
}

/**
 * Builds the adapters the config selects, and logs each choice, so that an operator can
 * tell from the first lines of the log which real services (or defaults) are in use.
 * Part of the composition roots: nothing else constructs adapters from config. Each
 * adapter's module is imported only when chosen, so a process on Kafka, Postgres and Redis
 * never loads PGlite, SQLite or the embedded log, nor the other way round.
 *
 * @example const adapters = createAdapters(config, logger);
 */
export async function createAdapters(config: Config, logger: Logger): Promise<Adapters> {
  const log = logger.child({ component: 'adapters' });

  let bus: Bus;
  if (config.kafka.brokers) {
    const { client, clientId, lingerMs, fetchMinBytes, fetchMaxWaitMs, maxMessageBytes } = config.kafka;
    const options = { brokers: [...config.kafka.brokers], clientId, logger, lingerMs, fetchMinBytes, fetchMaxWaitMs, maxBatchBytes: maxMessageBytes };
    if (client === 'platformatic') {
      const { createPlatformaticBus } = await import('./bus/platformatic.ts');
      bus = createPlatformaticBus(options);
    } else {
      const { createKafkaBus } = await import('./bus/kafka.ts');
      bus = createKafkaBus(options);
    }
    const library = client === 'platformatic' ? '@platformatic/kafka' : 'kafkajs';
    log.info({ adapter: 'kafka', client, brokers: config.kafka.brokers }, `bus: Apache Kafka (client: ${library}; set KAFKA_CLIENT to change)`);
  } else {
    // One SQLite file for the log and the marks (the cache below); a data dir from before
    // (the segment-file log under bus/) is moved into it first.
    const file = join(config.dataDir, EMBEDDED_FILE);
    const { createSqliteBus, migrateSegmentLog } = await import('./bus/sqlite.ts');
    await migrateSegmentLog({ from: join(config.dataDir, 'bus'), file, logger });
    bus = await createSqliteBus({ file, logger });
    log.info({ adapter: 'sqlite', default: true, file }, `bus: embedded log in SQLite at ${file} (default; set KAFKA_BROKERS for Apache Kafka)`);
  }

  let store: Store | undefined;
  if (config.database.url) {
    const { createPgStore } = await import('./store/pg.ts');
    store = createPgStore({ url: config.database.url, ...(config.database.schema ? { schema: config.database.schema } : {}) });
    log.info({ adapter: 'postgres', database: redactUrl(config.database.url), schema: config.database.schema ?? 'public' }, 'store: PostgreSQL');
  } else {
    const dir = join(config.dataDir, 'store');
    try {
      const { createPgliteStore } = await import('./store/pglite.ts');
      store = await createPgliteStore({ dir, logger });
    } catch (err) {
      await bus.close();
      throw err;
    }
    log.info({ adapter: 'pglite', default: true, dir }, `store: embedded PGlite at ${dir} (DATABASE_URL not set)`);
  }

  let cache: Cache;
  if (config.redis.url) {
    const { createRedisCache } = await import('./cache/redis.ts');
    cache = createRedisCache({ url: config.redis.url });
    log.info({ adapter: 'redis', redis: redactUrl(config.redis.url) }, 'cache/limiter: Redis');
  } else {
    // The dedup and delivered marks must survive a crash, or a batch read again after one
    // is routed and delivered again: they go to a SQLite file under the data dir.
    const path = join(config.dataDir, EMBEDDED_FILE);
    const { createSqliteCache, migrateCacheFile } = await import('./cache/sqlite.ts');
    migrateCacheFile({ from: join(config.dataDir, 'cache.sqlite'), to: path, logger: log });
    cache = createSqliteCache({ path });
    log.info(
      { adapter: 'sqlite', default: true, path },
      `cache/limiter: dedup and delivered marks in SQLite at ${path}, rate limits in process (default; set REDIS_URL to share them across replicas)`,
    );
  }

  return {
    bus,
    store,
    cache,
    async close() {
      await Promise.allSettled([bus.close(), store?.close(), cache.close()]);
    },
  };
}
