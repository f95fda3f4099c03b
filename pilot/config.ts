import { z } from 'zod';
import { ConfigError } from '../core/errors.ts';

/**
 * Pilot's own settings, from environment variables. They live here rather than in the
 * shared config schema because only Pilot reads them, and the admin token is a secret that
 * has no business in a YAML file.
 */

const ms = (min: number) => z.coerce.number().int().min(min);

export const PilotConfig = z.strictObject({
  /** Bearer token of the API and UI. Absent: one is generated at start and logged once. */
  adminToken: z.string().min(16, 'use at least 16 characters').optional(),
  /** Where alerts go (JSON, with a Slack-compatible `text`). Absent: alerts are only shown in the UI. */
  alertWebhook: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).optional(),
  alerts: z.strictObject({
    /** How often the rules are evaluated. */
    intervalMs: ms(100).default(15_000),
    /** The window of the rate and growth rules. */
    windowMs: ms(1_000).default(5 * 60_000),
    /** How long a condition must hold before it fires: one bad sample is not an incident. */
    forMs: ms(0).default(60_000),
    /** Failed attempts / (failed attempts + delivered events) over the window. */
    failureRate: z.coerce.number().min(0).max(1).default(0.5),
    /** At least this many attempts in the window before the failure rate means anything. */
    minAttempts: z.coerce.number().int().min(1).default(5),
    /** Raw-topic messages the router has not routed yet. */
    consumerLag: z.coerce.number().int().min(0).default(10_000),
  }),
  /** How often the metrics are sampled for the UI's charts. */
  sampleMs: ms(100).default(5_000),
  /**
   * A live stream (SSE) ends after this long and the browser reconnects. Bounded on purpose:
   * the server's graceful shutdown waits for open responses, and an endless stream would
   * hold it until the drain timeout.
   */
  streamMaxMs: ms(1_000).default(15_000),
});
export type PilotConfig = z.infer<typeof PilotConfig>;

/** Each setting and the environment variable that sets it. */
const ENV: ReadonlyArray<{ env: string; path: readonly [string] | readonly [string, string] }> = [
  { env: 'PILOT_ADMIN_TOKEN', path: ['adminToken'] },
  { env: 'PILOT_ALERT_WEBHOOK', path: ['alertWebhook'] },
  { env: 'PILOT_ALERT_INTERVAL_MS', path: ['alerts', 'intervalMs'] },
  { env: 'PILOT_ALERT_WINDOW_MS', path: ['alerts', 'windowMs'] },
  { env: 'PILOT_ALERT_FOR_MS', path: ['alerts', 'forMs'] },
  { env: 'PILOT_ALERT_FAILURE_RATE', path: ['alerts', 'failureRate'] },
  { env: 'PILOT_ALERT_MIN_ATTEMPTS', path: ['alerts', 'minAttempts'] },
  { env: 'PILOT_ALERT_CONSUMER_LAG', path: ['alerts', 'consumerLag'] },
  { env: 'PILOT_SAMPLE_MS', path: ['sampleMs'] },
  { env: 'PILOT_STREAM_MAX_MS', path: ['streamMaxMs'] },
];

/**
 * Reads Pilot's settings from `env`. An empty variable counts as unset, as in the main
 * config. Throws a ConfigError naming the variable when a value is bad.
 *
 * @example
 *   const pilot = pilotConfigFrom(process.env);
 *   pilot.adminToken; // undefined: a token is generated at start
 */
export function pilotConfigFrom(env: Readonly<Record<string, string | undefined>>): PilotConfig {
  const input: { alerts: Record<string, string> } & Record<string, unknown> = { alerts: {} };
  for (const { env: name, path } of ENV) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    if (path.length === 1) input[path[0]] = value;
    else input.alerts[path[1]] = value;
  }
  const parsed = PilotConfig.safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const key = issue.path.join('.');
      const name = ENV.find((e) => e.path.join('.') === key)?.env ?? key;
      return `  - ${name}: ${issue.message}`;
    });
    throw new ConfigError(`Invalid Pilot configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
