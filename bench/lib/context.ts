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
  log(msg: string): void;
}

export interface Scenario {
  name: string;
  description: string;
  /** Heavy: runs only when named (`npm run bench -- <name>`), not in the default set. */
  onlyWhenNamed?: boolean;
  run(ctx: BenchContext): Promise<ScenarioOutput>;
}
