import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPgControlPlane, seedControlPlane, updateControlPlane } from '../../core/control-plane-pg.ts';
import type { ControlPlaneSnapshot } from '../../core/control-plane.ts';
import type { Envelope } from '../../core/envelope.ts';
import { createPgliteStore } from '../../core/store/pglite.ts';
import { createPgDeployLog } from '../../gitops/deploys.ts';
import { createPgSyncStatusStore, type SyncStatus } from '../../gitops/controller/sync.ts';
import { createSqliteStore } from '../../core/store/sqlite.ts';
import type { Store } from '../../core/store/types.ts';
import { pendingByStage, pendingCounts } from '../../pilot/dead-letters.ts';
import { getDeadLetter, listDeadLetters, recordDeadLetters, replayDeadLetters } from '../../sinks/dead-letters.ts';
import { storeContract } from '../contracts/store.ts';
import { testLogger, waitFor } from '../helpers/index.ts';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'orrery-pglite-'));
  dirs.push(dir);
  return dir;
}

storeContract('pglite', async () => createPgliteStore({ dir: await tempDir(), logger: testLogger() }));

describe('pglite store on disk', () => {
  it('keeps committed rows across a reopen, and one process at a time holds the directory', async () => {
    const dir = await tempDir();
    const store = await createPgliteStore({ dir, logger: testLogger() });
    await store.query('create table kept (v text)');
    await store.query('insert into kept values ($1)', ['one']);
    await expect(createPgliteStore({ dir, logger: testLogger() })).rejects.toMatchObject({ code: 'STORE_LOCKED' });
    await store.close();

    const again = await createPgliteStore({ dir, logger: testLogger() });
    try {
      const { rows } = await again.query<{ v: string }>('select v from kept');
      expect(rows).toEqual([{ v: 'one' }]);
    } finally {
      await again.close();
    }
  });
});

/**
 * The state on the embedded store (SQLite, core/store/sqlite.ts), through the same modules
 * that use Postgres (whose own suites run on the machine's Postgres). PGlite, the embedded
 * store before it, is kept only to read an older data dir (core/store/from-pglite.ts): its
 * contract above, its move in store-move.test.ts.
 */
const EMBEDDED_STORES: Array<[string, () => Promise<Store>]> = [
  ['sqlite', async () => createSqliteStore({ file: join(await tempDir(), 'orrery.sqlite'), logger: testLogger() })],
];

describe.each(EMBEDDED_STORES)('dead letters on %s', (_kind, open) => {
  it('recorded, listed, counted as pending, replayed once', async () => {
    const store = await open();
    try {
      const firstAttemptAt = Date.parse('2026-01-02T03:04:05.678Z');
      const event = (messageId: string) => ({ v: 1, sourceId: 'web', type: 'track', event: 'E', messageId, userId: 'u', receivedAt: new Date(firstAttemptAt).toISOString() }) as unknown as Envelope;
      await recordDeadLetters(store, [
        { destinationId: 'hook', event: event('m-1'), attempts: 5, lastError: 'HTTP 500', httpStatus: 500, firstAttemptAt },
        { destinationId: 'other', event: event('m-2'), attempts: 1, lastError: 'timeout', firstAttemptAt },
      ]);
      await recordDeadLetters(store, [{ destinationId: 'hook', event: event('m-3'), attempts: 2, lastError: 'HTTP 503', httpStatus: 503, firstAttemptAt }]);
      const [letter] = await listDeadLetters(store);
      expect(letter).toMatchObject({ id: 1, destinationId: 'hook', messageId: 'm-1', attempts: 5, httpStatus: 500, replayedAt: null, firstAttemptAt: '2026-01-02T03:04:05.678Z' });
      // The event comes back as the object recorded, not as its JSON text.
      expect(letter!.event).toEqual(event('m-1'));
      expect(await getDeadLetter(store, 2)).toMatchObject({ destinationId: 'other', messageId: 'm-2', httpStatus: null });
      expect((await listDeadLetters(store, { destinationId: 'hook' })).map((l) => l.id)).toEqual([1, 3]);
      expect(await pendingCounts(store)).toEqual({ hook: 2, other: 1 });
      expect(await pendingByStage(store)).toEqual({ sink: 3, router: 0 });

      const delivered: string[] = [];
      const deliver = async (dest: string, e: Envelope) => {
        delivered.push(`${dest}:${e.messageId}`);
      };
      expect(await replayDeadLetters(store, { destinationId: 'hook', ids: [3] }, deliver)).toEqual({ replayed: [3], failed: [] });
      const failing = await replayDeadLetters(store, {}, async (dest, e) => {
        if (dest === 'other') throw new Error('still down');
        await deliver(dest, e);
      });
      expect(failing).toEqual({ replayed: [1], failed: [{ id: 2, error: 'still down' }] });
      expect(await replayDeadLetters(store, {}, deliver)).toEqual({ replayed: [2], failed: [] });
      expect(await replayDeadLetters(store, {}, deliver)).toEqual({ replayed: [], failed: [] });
      expect(delivered).toEqual(['hook:m-3', 'hook:m-1', 'other:m-2']);
      expect(await listDeadLetters(store)).toEqual([]);
      expect(await pendingCounts(store)).toEqual({});
      const replayed = await listDeadLetters(store, { includeReplayed: true });
      expect(replayed.map((l) => [l.id, l.replayAttempts, l.replayError])).toEqual([[1, 1, null], [2, 2, null], [3, 1, null]]);
      expect(replayed.every((l) => l.replayedAt !== null && Date.parse(l.replayedAt) >= Date.parse(l.deadAt))).toBe(true);
    } finally {
      await store.close();
    }
  });
});

describe.each(EMBEDDED_STORES)('gitops state on %s', (_kind, open) => {
  it('deploys: recorded, deduplicated by delivery, and moved through their states', async () => {
    const store = await open();
    try {
      const deploys = await createPgDeployLog(store);
      const push = { repository: 'registry.example.com/team/airflow', tag: '3.1.0' };
      const first = await deploys.record({ provider: 'generic', deliveryId: 'd-1', policy: 'airflow', push });
      expect(first.duplicate).toBe(false);
      expect(first.deploy).toMatchObject({ id: 1, state: 'received', deliveryId: 'd-1', revertSha: null });
      expect((await deploys.record({ provider: 'generic', deliveryId: 'd-1', policy: 'airflow', push })).duplicate).toBe(true);
      // No delivery id: never a duplicate.
      const other = await deploys.record({ provider: 'generic', deliveryId: undefined, policy: 'web', push: { ...push, tag: '3.1.1' } });
      await deploys.transition(first.deploy.id, 'committed', { sha: 'abc123' });
      await deploys.transition(first.deploy.id, 'failed', { error: 'rollout timed out', detail: 'worker-0 not ready', revertSha: 'def456' });
      const [latest, listed] = await deploys.list();
      expect(latest!.id).toBe(other.deploy.id);
      expect(listed).toMatchObject({ id: first.deploy.id, state: 'failed', sha: 'abc123', error: 'rollout timed out', revertSha: 'def456' });
      expect(listed!.history.map((h) => [h.state, h.detail])).toEqual([['received', undefined], ['committed', undefined], ['failed', 'worker-0 not ready']]);
      expect(Date.parse(listed!.updatedAt)).toBeGreaterThanOrEqual(Date.parse(listed!.createdAt));
      expect((await deploys.list({ policy: 'web' })).map((d) => d.id)).toEqual([other.deploy.id]);
      expect(await deploys.get(first.deploy.id)).toEqual(listed);
    } finally {
      await store.close();
    }
  });

  it('sync status: saved as a document and read back whole, one row per name', async () => {
    const store = await open();
    try {
      const status = await createPgSyncStatusStore(store, 'manifests/environments/dev');
      expect(await status.load()).toBeUndefined();
      const first: SyncStatus = {
        mode: 'plan',
        revision: 'abc',
        conditions: [{ type: 'Ready', status: 'True', reason: 'Planned', message: 'ünïcödé "quoted"', at: new Date().toISOString() }],
        inventory: ['apps/Deployment/ns/web'],
        plan: { apply: ['a', 'b'], prune: [] },
        updatedAt: new Date().toISOString(),
      };
      await status.save(first);
      await status.save({ ...first, revision: 'def' });
      expect(await status.load()).toEqual({ ...first, revision: 'def' });
      expect(await (await createPgSyncStatusStore(store, 'other')).load()).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});

describe.each(EMBEDDED_STORES)('control plane on %s', (_kind, open) => {
  const web = { id: 'web', writeKeys: ['wk_embedded_0123'], writeKeyHashes: [], enabled: true, allowedOrigins: ['*'] };

  it('seeded once, versioned, and each committed change reaches subscribers by notify', async () => {
    const store = await open();
    try {
      const logger = testLogger();
      const seed = { sources: [web], destinations: [], routes: [] };
      expect(await seedControlPlane(store, seed, logger)).toBe(1);
      // The same seed again is no new version; a changed seed is.
      expect(await seedControlPlane(store, seed, logger)).toBe(1);
      const cp = await createPgControlPlane({ store, logger, pollMs: 3_600_000 });
      const seen: ControlPlaneSnapshot[] = [];
      cp.subscribe((snap) => seen.push(snap));
      expect(cp.current().version).toBe(1);
      expect(cp.current().sources[0]?.writeKeyHashes[0]).toMatch(/^sha256:/);
      await updateControlPlane(store, (doc) => ({ ...doc, destinations: [{ id: 'hook', type: 'webhook', enabled: true, url: 'https://example.com/h' }] }), {
        expectedVersion: 1,
      });
      await waitFor(() => seen.length === 1, { what: 'the change by notify' });
      expect(seen[0]!.version).toBe(2);
      expect(cp.current().destinations.map((d) => d.id)).toEqual(['hook']);
      await expect(updateControlPlane(store, (doc) => doc, { expectedVersion: 1 })).rejects.toMatchObject({ code: 'CONTROL_PLANE_CONFLICT' });
      // A change that fails validation is rolled back: no version, no notify.
      await expect(updateControlPlane(store, (doc) => ({ ...doc, routes: [{ source: 'nope', destination: 'hook', enabled: true, transforms: [] }] }))).rejects.toMatchObject({
        code: 'CONTROL_PLANE_INVALID',
      });
      expect(await seedControlPlane(store, { ...seed, sources: [{ ...web, id: 'app' }] }, logger)).toBe(3);
      await waitFor(() => seen.length === 2, { what: 'the seed change by notify' });
      expect(seen.map((s) => s.version)).toEqual([2, 3]);
      await cp.close();
    } finally {
      await store.close();
    }
  });
});

// Runs after the suite's own afterAll has closed the store.
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
