import { mkdtemp, readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { uniqueName, waitFor } from '../helpers/index.ts';
import { startIngestOnKafka, type IngestOnKafka } from '../helpers/ingest.ts';
import { startOrrery, type OrreryProcess } from '../helpers/process.ts';

const HOOK = fileURLToPath(new URL('../helpers/trace-modules.mjs', import.meta.url));

/** Megabytes of a process's resident set (VmRSS) or its peak (VmHWM), from /proc. */
const mib = (pid: number, field: 'VmRSS' | 'VmHWM') => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

/**
 * Issue #18: a command loads only what it uses. `orrery start ingest` on Kafka, Postgres
 * and Redis must not load the Kubernetes client, isomorphic-git or PGlite (87, 17 and
 * more MiB of RSS on import). Every module the process loads is traced by a load hook.
 */
describe('orrery start ingest loads only what ingest uses', () => {
  let ingest: IngestOnKafka | undefined;
  afterAll(async () => {
    await ingest?.stop();
  });

  it('no Kubernetes client, isomorphic-git or PGlite in the process, and it takes events', async () => {
    const trace = join(await mkdtemp(join(tmpdir(), 'orrery-trace-')), 'modules.txt');
    const key = `wk_${uniqueName('lazy')}`;
    ingest = await startIngestOnKafka('it-lazy', `sources:\n  - id: lazy\n    writeKeys: [${key}]\n`, {
      NODE_OPTIONS: `--import=${HOOK}`,
      ORRERY_TRACE_MODULES: trace,
    });
    const res = await fetch(`${ingest.orrery.url}/v1/track`, {
      method: 'POST',
      headers: { authorization: `Basic ${btoa(`${key}:`)}` },
      body: JSON.stringify({ userId: 'u', event: 'Loaded', messageId: key }),
    });
    expect(res.status).toBe(200);
    await waitFor(() => ingest!.envelopes().some((e) => e.messageId === key), { what: 'the event on the raw topic' });

    const loaded = (await readFile(trace, 'utf8')).split('\n').filter(Boolean);
    const packages = (name: string) => loaded.filter((u) => u.includes(`/node_modules/${name}/`));
    // The hook sees what ingest does load: the check below cannot pass by seeing nothing.
    expect(packages('@platformatic/kafka').length).toBeGreaterThan(0);
    expect(loaded.some((u) => u.endsWith('/ingest/main.ts'))).toBe(true);
    expect(packages('@kubernetes/client-node')).toEqual([]);
    expect(packages('isomorphic-git')).toEqual([]);
    expect(packages('@electric-sql/pglite')).toEqual([]);
    // The default Kafka client only: the other one (KAFKA_CLIENT=kafkajs) is not loaded.
    expect(packages('kafkajs')).toEqual([]);
    expect(loaded.filter((u) => /\/(gitops|pilot|sinks|router)\/main\.ts$/.test(u))).toEqual([]);
    // The manifests renderer is `orrery render`'s: only its help and options are loaded.
    expect(loaded.filter((u) => u.includes('/manifests/') && !u.includes('/node_modules/') && !u.endsWith('/manifests/cli-help.ts'))).toEqual([]);
    // Once serving, what start-up left in the heap was collected (core/heap.ts).
    // On Kafka the process keeps node's heap limit: no restart to set the embedded one.
    expect(ingest.orrery.logs.filter((l) => String(l.msg).startsWith('node: heap limit'))).toEqual([]);
    const settled = ingest.orrery.logs.find((l) => l.msg === 'heap settled after start') as { heapUsedMiB: [number, number] } | undefined;
    expect(settled).toBeDefined();
    expect(settled!.heapUsedMiB[1]).toBeLessThan(settled!.heapUsedMiB[0]);
    const pid = ingest.orrery.child.pid!;
    console.info(`orrery start ingest: ${loaded.length} modules, RSS ${mib(pid, 'VmRSS').toFixed(0)} MiB after one event (peak ${mib(pid, 'VmHWM').toFixed(0)} MiB)`);
  });
});

/** Plan mode (no cluster) has nothing to apply with: the Kubernetes client (~870 modules) stays unloaded. */
describe('orrery start gitops in plan mode loads no Kubernetes client', () => {
  let gitops: OrreryProcess | undefined;
  afterAll(async () => {
    await gitops?.stop();
  });

  it('plans its first sync without @kubernetes/client-node in the process', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orrery-trace-gitops-'));
    const trace = join(dir, 'modules.txt');
    gitops = await startOrrery(
      ['start', 'gitops'],
      { ORRERY_DATA_DIR: join(dir, 'data'), PILOT_ADMIN_TOKEN: 'lazy-load-admin-token-0123456789', NODE_OPTIONS: `--import=${HOOK}`, ORRERY_TRACE_MODULES: trace },
      { without: ['KUBECONFIG', 'ORRERY_CONFIG'] },
    );
    await waitFor(() => gitops!.logs.some((l) => typeof l.msg === 'string' && l.msg.startsWith('sync: plan for')), { timeoutMs: 60_000, what: "the first sync's plan" });
    const loaded = (await readFile(trace, 'utf8')).split('\n').filter(Boolean);
    const packages = (name: string) => loaded.filter((u) => u.includes(`/node_modules/${name}/`));
    expect(packages('isomorphic-git').length).toBeGreaterThan(0);
    expect(packages('@kubernetes/client-node')).toEqual([]);
    const pid = gitops.child.pid!;
    console.info(`orrery start gitops (plan mode): ${loaded.length} modules, RSS ${mib(pid, 'VmRSS').toFixed(0)} MiB`);
  });
});
