import { spawnSync } from 'node:child_process';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { settleHeap } from './heap.ts';

describe('settleHeap', () => {
  it('collects garbage that no allocation would have collected yet', () => {
    // ~40 MiB of short-lived strings, dropped before the collection.
    let garbage: string[] | undefined = Array.from({ length: 400_000 }, (_, i) => `${i}`.padStart(100, 'x'));
    expect(garbage.length).toBe(400_000);
    garbage = undefined;
    const s = settleHeap();
    expect(s.heapUsedBefore - s.heapUsedAfter).toBeGreaterThan(20 * 2 ** 20);
    expect(s.ms).toBeGreaterThanOrEqual(0);
  });

  it('leaves no gc function behind, on the global object or in new contexts', () => {
    settleHeap();
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    expect(runInNewContext('typeof gc')).toBe('undefined');
  });
});

describe('restartWithHeapLimit', () => {
  // A child that asks for a 200 MiB limit, then prints its pid, flags and V8's limit.
  const script = `import { restartWithHeapLimit } from ${JSON.stringify(new URL('./heap.ts', import.meta.url).href)};
import { getHeapStatistics } from 'node:v8';
restartWithHeapLimit(200);
console.log(JSON.stringify({ execArgv: process.execArgv, limitMiB: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20) }));`;
  const run = (env: NodeJS.ProcessEnv = {}) => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '', ...env } });
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout) as { execArgv: string[]; limitMiB: number };
  };

  it('replaces the process by itself with the limit, once: the restarted one calls it too and goes on (one line printed)', () => {
    const r = run();
    expect(r.execArgv).toContain('--max-old-space-size=200');
    expect(r.limitMiB).toBeLessThan(400);
  });

  it('leaves a heap size the operator set alone', () => {
    const r = run({ NODE_OPTIONS: '--max-old-space-size=300' });
    expect(r.execArgv).not.toContain('--max-old-space-size=200');
    expect(r.limitMiB).toBeGreaterThanOrEqual(300);
  });
});
