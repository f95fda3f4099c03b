import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createLogger, type Logger } from '../../core/logger.ts';

const run = promisify(execFile);
const SERVICES_DIR = fileURLToPath(new URL('../services/', import.meta.url));

/** A name no other test (or earlier run) uses: topics, groups, schemas. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}

/** Reads a service URL the test needs; global-setup guarantees it is there. */
export function serviceEnv(name: 'KAFKA_BROKERS' | 'DATABASE_URL' | 'REDIS_URL' | 'KUBECONFIG'): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests through test/all, or eval "$(test/services/up)" first`);
  return value;
}

export function testLogger(): Logger {
  return createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
}

/**
 * Polls `check` until it returns a value other than undefined/false, like kafkajs's
 * testHelpers waitFor: no fixed sleeps in tests.
 */
export async function waitFor<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
  throw new Error(`timed out waiting for ${opts.what ?? 'condition'}${lastError ? `: ${(lastError as Error).message}` : ''}`);
}

/**
 * Stops or starts one of the services that test/services/up started, for outage tests.
 * Fails loudly when the service is not ours to stop (env pointed at an external one).
 */
export async function serviceCtl(action: 'up' | 'down', service: 'kafka' | 'postgres' | 'redis'): Promise<void> {
  await run('bash', [`${SERVICES_DIR}${action}`, service], { env: { ...process.env, KAFKA_BROKERS: '', DATABASE_URL: '', REDIS_URL: '' } });
}
