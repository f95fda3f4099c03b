import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Bus } from './bus/types.ts';
import type { Cache } from './cache/types.ts';
import type { Config } from './config.ts';
import { OrreryError } from './errors.ts';
import type { Logger } from './logger.ts';
import { redactUrl } from './logger.ts';
import type { Store } from './store/types.ts';

/** The embedded default's SQLite file under the data dir: the bus's log and the cache's marks. */
export const EMBEDDED_FILE = 'orrery.sqlite';

/**
 * The embedded store's SQLite file under the data dir. A file of its own, not EMBEDDED_FILE:
 * a store transaction may span awaits (a dead-letter replay holds its row while it
 * delivers), and SQLite has one writer per file, so the bus's synchronous writes would wait
 * on that delivery with the event loop blocked.
 */
export const STORE_FILE = 'store.sqlite';

export interface Adapters {
  bus: Bus;
  /** DATABASE_URL's Postgres, or the embedded SQLite store. */
  store: Store;
  cache: Cache;
  close(): Promise<void>;
}

/**
 * Builds the adapters the config selects, and logs each choice, so that an operator can
 * tell from the first lines of the log which real services (or defaults) are in use.
 * Part of the composition roots: nothing else constructs adapters from config. Each
 * adapter's module is imported only when chosen, so a process on Kafka, Postgres and Redis
 * never loads SQLite or the embedded log, nor the other way round.
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

  let store: Store;
  try {
    store = await openStore(config, logger);
  } catch (err) {
    await bus.close();
    throw err;
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

/**
 * The store the config selects: DATABASE_URL's Postgres, or the embedded SQLite store under
 * the data dir (where an older Orrery's PGlite store is moved in first: core/store/from-pglite.ts).
 * Also what read-only commands open alone (`lock: false`: no lock, no move): SQLite's WAL lets
 * them read while `orrery start` runs, which the bus's lock would refuse.
 *
 * @example const store = await openStore(config, logger);
 */
export async function openStore(config: Config, logger: Logger, opts: { lock?: boolean } = {}): Promise<Store> {
  const log = logger.child({ component: 'adapters' });
  if (config.database.url) {
    const { createPgStore } = await import('./store/pg.ts');
    const store = createPgStore({ url: config.database.url, ...(config.database.schema ? { schema: config.database.schema } : {}) });
    log.info({ adapter: 'postgres', database: redactUrl(config.database.url), schema: config.database.schema ?? 'public' }, 'store: PostgreSQL');
    return store;
  }
  const file = join(config.dataDir, STORE_FILE);
  const { createSqliteStore } = await import('./store/sqlite.ts');
  // One process owns the data dir, as for the bus; a command that only reads needs no lock.
  if (opts.lock === false) {
    if (existsSync(join(config.dataDir, 'store'))) {
      throw new OrreryError('STORE_MIGRATION_NEEDED', `${join(config.dataDir, 'store')} holds the embedded store of an older Orrery (PGlite): run \`orrery start\` once, which moves it into ${file}`, {
        retriable: false,
      });
    }
    return createSqliteStore({ file, logger });
  }
  const { lockDir } = await import('./dir-lock.ts');
  const release = await lockDir(config.dataDir, {
    code: 'STORE_LOCKED',
    what: 'an embedded store',
    file: `${STORE_FILE}.lock`,
    hint: 'the embedded store serves one process; run the components in one process (orrery start), or set DATABASE_URL',
    logger,
  });
  const store = createSqliteStore({ file, logger, onClose: release });
  try {
    const { movePgliteStore } = await import('./store/from-pglite.ts');
    await movePgliteStore({ from: join(config.dataDir, 'store'), store, logger });
  } catch (err) {
    await store.close();
    throw err;
  }
  log.info({ adapter: 'sqlite', default: true, file }, `store: embedded SQLite at ${file} (default; set DATABASE_URL for PostgreSQL)`);
  return store;
}
