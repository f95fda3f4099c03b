import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/index.ts';
import { startOrrery, type OrreryProcess } from '../helpers/process.ts';
import { startReceiver } from '../helpers/receiver.ts';

const HOOK = fileURLToPath(new URL('../helpers/trace-modules.mjs', import.meta.url));

/**
 * The README's run command on a machine with nothing running: no Kafka, Postgres or Redis
 * in the environment. Orrery runs on its embedded defaults, says so in its logs, delivers
 * end to end, and a restart loses nothing that was acknowledged.
 */
describe('orrery start on embedded defaults', () => {
  const procs: OrreryProcess[] = [];
  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.stop()));
  });

  it('ingests, routes and delivers with nothing configured, and keeps acknowledged events across a restart', async () => {
    const receiver = await startReceiver();
    const dir = await mkdtemp(join(tmpdir(), 'orrery-embedded-'));
    await writeFile(
      join(dir, 'orrery.yaml'),
      `sources: [{ id: web, writeKeys: [embedded-key] }]
destinations: [{ id: hook, type: webhook, url: "${receiver.url}", allowPrivateNetwork: true }]
routes: [{ source: web, destination: hook }]
`,
    );
    // Empty values: the embedded defaults, whatever the test environment holds.
    const env = { ORRERY_CONFIG: join(dir, 'orrery.yaml'), ORRERY_DATA_DIR: join(dir, 'data'), KAFKA_BROKERS: '', DATABASE_URL: '', REDIS_URL: '' };
    // Every module the first start loads (test/helpers/trace-modules.mjs).
    const trace = join(dir, 'modules.txt');
    let orrery = await startOrrery(['start'], { ...env, NODE_OPTIONS: `--import=${HOOK}`, ORRERY_TRACE_MODULES: trace });
    procs.push(orrery);
    const messages = orrery.logs.map((l) => String(l.msg));
    expect(messages.some((m) => m.startsWith('bus: embedded log in SQLite at ') && m.includes('(default; set KAFKA_BROKERS'))).toBe(true);
    expect(messages.some((m) => m.startsWith('cache/limiter: dedup and delivered marks in SQLite'))).toBe(true);
    expect(messages).toContain(`store: embedded SQLite at ${join(dir, 'data', 'store.sqlite')} (default; set DATABASE_URL for PostgreSQL)`);
    expect(messages).toContain('control plane: versioned in the store (sqlite)');
    // The embedded default's smaller V8 heap limit (core/heap.ts), set by replacing the process once.
    expect(messages).toContain('node: heap limit 1024 MiB (embedded default; --max-old-space-size in ORRERY_NODE_FLAGS to change)');
    // No gitops section: the embedded GitOps default, a local repository under the data dir, planning only.
    expect(messages).toContain(`gitops: manifests repo: local git repository at ${join(dir, 'data', 'manifests')} (default; set gitops.repo.url), created with Orrery's example environment manifests/environments/dev`);
    expect(messages).toContain('gitops: sync in plan mode (default: nothing is applied to a cluster; KUBECONFIG applies with a gitops section only)');

    const send = (url: string, i: number) =>
      fetch(`${url}/v1/track`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Basic ${btoa('embedded-key:')}` },
        body: JSON.stringify({ userId: `u${i % 3}`, event: 'Embedded', messageId: `e-${i}` }),
      });
    for (let i = 0; i < 20; i++) expect((await send(orrery.url, i)).status).toBe(200);
    await waitFor(() => receiver.accepted().length >= 20, { what: 'the first 20 delivered' });
    // Each line names its component once (a nested part of it is its `unit`).
    expect(orrery.logs.filter((l) => l.repeatedComponentKey).map((l) => l.repeatedComponentKey)).toEqual([]);
    // Issue #19: the default store is SQLite: PGlite is not loaded (it is only to move an old store in).
    const loaded = (await readFile(trace, 'utf8')).split('\n').filter(Boolean);
    expect(loaded.some((u) => u.endsWith('/core/store/sqlite.ts'))).toBe(true);
    expect(loaded.filter((u) => u.includes('/node_modules/@electric-sql/pglite/') || u.endsWith('/core/store/pglite.ts'))).toEqual([]);
    // The warehouse destination's stager (pg, pg-copy-streams) waits for a warehouse batch.
    expect(loaded.filter((u) => /\/node_modules\/(pg|pg-copy-streams)\//.test(u))).toEqual([]);

    // Stop the receiver's acceptance, acknowledge more, restart Orrery: nothing acknowledged is lost.
    receiver.state.respond = () => 503;
    for (let i = 20; i < 30; i++) expect((await send(orrery.url, i)).status).toBe(200);
    expect(await orrery.stop()).toBe(0);
    receiver.state.respond = () => 200;
    orrery = await startOrrery(['start'], env);
    procs.push(orrery);
    await waitFor(() => new Set(receiver.accepted().map((b) => b.messageId)).size === 30, { timeoutMs: 60_000, what: 'all 30 delivered' });
    await receiver.close();
  });
});
