import type { ScenarioOutput } from './report.ts';
import type { Settings } from './settings.ts';

export interface Services {
  kafkaBrokers: string;
  redisUrl: string;
}

/** What a scenario gets from bench/run.ts. */
export interface BenchContext {
  scenario: string;
  settings: Settings;
  services: Services;
  /** Unique per `npm run bench`; part of every topic, group and messageId. */
  runId: string;
  tmpDir: string;
  profileDir: string;
  /** The Kafka client of the orrery processes this run starts (KAFKA_CLIENT); default kafkajs. */
  kafkaClient?: KafkaClientName;
  log(msg: string): void;
}

export type KafkaClientName = 'kafkajs' | 'platformatic';

export interface Scenario {
  name: string;
  description: string;
  /** Heavy: runs only when named (`npm run bench -- <name>`), not in the default set. */
  onlyWhenNamed?: boolean;
  run(ctx: BenchContext): Promise<ScenarioOutput>;
}
