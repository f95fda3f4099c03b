import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const NEEDED = ['KAFKA_BROKERS', 'DATABASE_URL', 'REDIS_URL', 'KUBECONFIG'] as const;

/**
 * Integration tests need the real services. When the env does not point at them already,
 * start them with test/services/up (idempotent: it reuses what is running) and take its
 * `export NAME=value` lines into this process, which the test workers inherit.
 */
export default function setup(): void {
  // An ambient KUBECONFIG usually points at a real cluster: tests only use the test one.
  const kube = process.env.KUBECONFIG ?? '';
  if (kube && !kube.includes('orrery-services') && kube !== process.env.ORRERY_TEST_KUBECONFIG) delete process.env.KUBECONFIG;
  if (NEEDED.every((n) => process.env[n])) return;
  const up = fileURLToPath(new URL('../services/up', import.meta.url));
  const out = execFileSync('bash', [up], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  for (const line of out.split('\n')) {
    const m = /^export ([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) process.env[m[1]!] = m[2]!.replace(/^['"]|['"]$/g, '');
  }
  const missing = NEEDED.filter((n) => !process.env[n]);
  if (missing.length > 0) throw new Error(`test/services/up did not export ${missing.join(', ')}`);
}
