import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Bus, IncomingMessage, Subscription } from '../../core/bus/types.ts';
import { decodeEnvelope, type Envelope } from '../../core/envelope.ts';
import { topicNames } from '../../core/topics.ts';
import { serviceEnv, uniqueName } from './index.ts';
import { startOrrery, type OrreryProcess } from './process.ts';
import { testBus } from './topics.ts';

/** An envelope read off the raw topic, with the record's key and partition. */
export type RawEvent = Envelope & { key: string | null; partition: number };

export interface IngestOnKafka {
  orrery: OrreryProcess;
  /** Every raw-topic record since start, in arrival order. */
  raw: IncomingMessage[];
  /** The records of `raw` that decode as envelopes. */
  envelopes(): RawEvent[];
  /** Stops ingest (if still running), then the consumer. */
  stop(): Promise<void>;
}

/**
 * `orrery start ingest` as a user runs it, against real Kafka and Redis, with `sourcesYaml`
 * (the `sources:` list of an orrery.yaml) and a topic prefix of its own, plus a consumer
 * that records its raw topic from now on. Other test files never write under this prefix;
 * tests in one file share it, so each tags its events (a run id) and filters `envelopes()`.
 */
export async function startIngestOnKafka(name: string, sourcesYaml: string, env: Record<string, string> = {}): Promise<IngestOnKafka> {
  const topics = topicNames(uniqueName(name.replace(/[^a-z0-9]/gi, '')));
  const dir = await mkdtemp(join(tmpdir(), `orrery-${name}-`));
  const config = join(dir, 'orrery.yaml');
  await writeFile(config, sourcesYaml);
  const orrery = await startOrrery(['start', 'ingest'], {
    ORRERY_CONFIG: config,
    INGEST_SPOOL_DIR: join(dir, 'spool'),
    KAFKA_BROKERS: serviceEnv('KAFKA_BROKERS'),
    KAFKA_TOPIC_PREFIX: topics.raw.split('.')[0]!,
    REDIS_URL: serviceEnv('REDIS_URL'),
    // A control plane of its own: in the default schema, another run's seed would replace
    // these sources mid-test (its write keys answered 401).
    DATABASE_URL: serviceEnv('DATABASE_URL'),
    DATABASE_SCHEMA: uniqueName(name.replace(/[^a-z0-9]/gi, '')).toLowerCase(),
    ...env,
  });
  const raw: IncomingMessage[] = [];
  let bus: Bus | undefined;
  let sub: Subscription | undefined;
  try {
    bus = testBus(name);
    sub = await bus.consume({
      group: uniqueName(name),
      topics: [topics.raw],
      fromBeginning: false,
      handle: async (b) => {
        raw.push(...b.messages);
      },
    });
    await sub.ready;
  } catch (err) {
    await orrery.stop();
    await bus?.close();
    throw err;
  }
  return {
    orrery,
    raw,
    envelopes: () =>
      raw.flatMap((m) => {
        const d = decodeEnvelope(m.value);
        return d.ok ? [{ ...d.envelope, key: m.key, partition: m.partition }] : [];
      }),
    async stop() {
      await orrery.stop();
      await bus!.close();
    },
  };
}
