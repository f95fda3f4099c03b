import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { launcherFlags, loadSettings } from './settings.ts';

describe('bench settings: node flags', () => {
  it('orrery children get the flags of bin/node-flags, which node accepts; BENCH_NODE_OPTIONS replaces them, empty for node defaults', () => {
    const flags = launcherFlags();
    expect(flags).toMatch(/^--/);
    expect(flags).not.toContain('#');
    // The flags ./orrery puts on node's command line, and the bench in NODE_OPTIONS: both must take them.
    execFileSync(process.execPath, [...flags.split(' '), '-e', '']);
    execFileSync(process.execPath, ['-e', ''], { env: { ...process.env, NODE_OPTIONS: flags } });
    expect(loadSettings({}).nodeOptions).toBe(flags);
    expect(loadSettings({ BENCH_NODE_OPTIONS: '' }).nodeOptions).toBe('');
    expect(loadSettings({ BENCH_NODE_OPTIONS: ' --max-semi-space-size=16 ' }).nodeOptions).toBe('--max-semi-space-size=16');
  });
});
