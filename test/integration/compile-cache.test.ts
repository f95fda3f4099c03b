import { execFile } from 'node:child_process';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../bin/orrery.js', import.meta.url));

/**
 * Issue #18: the CLI's entry point (bin/orrery.js) turns on node's compile cache, so that a
 * start after the first neither strips the TypeScript sources again (node's stripper is
 * ~20 MiB of RSS in every process) nor compiles them again. Checked the way node reports
 * it: whether the process loaded the stripper (`process.moduleLoadList`).
 */
describe('the CLI and node compile cache', () => {
  it('the first run fills the cache; the next loads no TypeScript stripper', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orrery-compile-cache-'));
    // The default place: the user's own cache dir ($XDG_CACHE_HOME here), not a shared temp dir.
    const cache = join(dir, 'xdg', 'orrery', 'node-compile-cache');
    // Preloaded: writes, at exit, whether node loaded its TypeScript stripper (amaro).
    const probe = join(dir, 'probe.mjs');
    await writeFile(probe, `process.on('exit', () => process.stderr.write('stripper loaded: ' + process.moduleLoadList.some((m) => m.includes('amaro')) + '\\n'));\n`);
    const env: NodeJS.ProcessEnv = { ...process.env, XDG_CACHE_HOME: join(dir, 'xdg'), NODE_OPTIONS: `--import=${probe}` };
    delete env.NODE_DISABLE_COMPILE_CACHE;
    delete env.NODE_COMPILE_CACHE;
    // `orrery help start` loads the CLI and its core modules, all TypeScript.
    const first = await run(process.execPath, [CLI, 'help', 'start'], { env });
    expect(first.stdout).toContain('Usage: orrery start');
    expect(first.stderr).toContain('stripper loaded: true');
    expect((await readdir(cache)).length).toBeGreaterThan(0);

    const second = await run(process.execPath, [CLI, 'help', 'start'], { env });
    expect(second.stdout).toBe(first.stdout);
    expect(second.stderr).toContain('stripper loaded: false');

    // NODE_DISABLE_COMPILE_CACHE=1 turns it off: the sources are stripped again.
    const off = await run(process.execPath, [CLI, 'help', 'start'], { env: { ...env, NODE_DISABLE_COMPILE_CACHE: '1' } });
    expect(off.stderr).toContain('stripper loaded: true');
  });
});
