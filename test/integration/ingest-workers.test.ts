import { readdir } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { uniqueName, waitFor } from '../helpers/index.ts';
import { startIngestOnKafka, type IngestOnKafka } from '../helpers/ingest.ts';

/** One POST on a connection of its own (no keep-alive), so the cluster spreads them. */
function post(url: string, key: string, body: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false, headers: { authorization: `Basic ${btoa(`${key}:`)}`, 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/**
 * Issue #18, "use every core": `orrery start ingest --workers 2` (INGEST_WORKERS) runs two
 * processes on one port under a supervising primary. Every event is taken once, /metrics
 * is the cluster's sum whichever worker answers, each worker has a spool of its own, and
 * SIGTERM drains both.
 */
describe('orrery start ingest with two workers', () => {
  let ingest: IngestOnKafka | undefined;
  afterAll(async () => {
    await ingest?.stop();
  });

  it('takes every event once across the workers, sums their metrics, and drains both on SIGTERM', async () => {
    const key = `wk_${uniqueName('workers')}`;
    const spool = join(process.env.TMPDIR ?? '/tmp', uniqueName('orrery-workers-spool'));
    ingest = await startIngestOnKafka('it-workers', `sources:\n  - id: multi\n    writeKeys: [${key}]\n`, { INGEST_WORKERS: '2', INGEST_SPOOL_DIR: spool });
    const orrery = ingest.orrery;
    // Two processes start at once on 2 cores, beside whatever else the suite runs: once past 30 s.
    await waitFor(() => orrery.logs.filter((l) => l.msg === 'ingest ready').length === 2, { timeoutMs: 90_000, what: 'two workers ready' });
    const workerPids = new Set(orrery.logs.filter((l) => l.msg === 'ingest ready').map((l) => l.pid));
    expect(workerPids.size).toBe(2);
    expect(workerPids.has(orrery.child.pid)).toBe(false);
    expect(orrery.logs.some((l) => l.msg === 'started 2 workers sharing the port')).toBe(true);

    const run = uniqueName('w');
    const statuses = await Promise.all(
      Array.from({ length: 40 }, (_, r) =>
        post(`${orrery.url}/v1/batch`, key, { batch: Array.from({ length: 5 }, (_, i) => ({ type: 'track', event: 'Spread', userId: `${run}-u${i}`, messageId: `${run}-${r}-${i}` })) }),
      ),
    );
    expect(statuses.every((s) => s === 200)).toBe(true);
    const ours = () => ingest!.envelopes().filter((e) => e.messageId.startsWith(`${run}-`));
    await waitFor(() => ours().length >= 200, { what: 'the 200 events on the raw topic' });
    expect(new Set(ours().map((e) => e.messageId)).size).toBe(200);

    // Whichever worker answers /metrics, it is the sum of both.
    for (let i = 0; i < 4; i++) {
      const text = await new Promise<string>((resolve, reject) => {
        request(`${orrery.url}/metrics`, { agent: false }, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve(body));
        })
          .on('error', reject)
          .end();
      });
      expect(text).toMatch(/orrery_ingest_events_accepted_total\{source="multi"[^}]*\} 200\b/);
    }
    expect((await readdir(spool)).sort()).toEqual(['worker-0', 'worker-1']);

    // A worker killed is replaced (with its id, so its spool), and the port keeps answering.
    const [victim] = [...workerPids] as number[];
    process.kill(victim!, 'SIGKILL');
    await waitFor(() => orrery.logs.filter((l) => l.msg === 'ingest ready').length === 3, { what: 'a replacement worker' });
    const replacement = orrery.logs.filter((l) => l.msg === 'ingest ready').at(-1)!.pid as number;
    expect(workerPids.has(replacement)).toBe(false);
    const after = await Promise.all(Array.from({ length: 10 }, (_, i) => post(`${orrery.url}/v1/track`, key, { userId: `${run}-after`, event: 'After', messageId: `${run}-after-${i}` })));
    expect(after.every((s) => s === 200)).toBe(true);
    expect((await readdir(spool)).sort()).toEqual(['worker-0', 'worker-1']);

    expect(await orrery.stop()).toBe(0);
    const stopped = orrery.logs.filter((l) => l.msg === 'stopped cleanly');
    // Each worker alive, then the primary.
    const alive = [...workerPids].filter((p) => p !== victim);
    expect(new Set(stopped.map((l) => l.pid))).toEqual(new Set([...alive, replacement, orrery.child.pid]));
  });
});
