import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPgControlPlane, seedControlPlane, updateControlPlane } from '../../core/control-plane-pg.ts';
import type { Envelope } from '../../core/envelope.ts';
import { movePgliteStore } from '../../core/store/from-pglite.ts';
import { createPgliteStore } from '../../core/store/pglite.ts';
import { createSqliteStore } from '../../core/store/sqlite.ts';
import type { Store } from '../../core/store/types.ts';
import { createPgDeployLog } from '../../gitops/deploys.ts';
import { createPgSyncStatusStore, type SyncStatus } from '../../gitops/controller/sync.ts';
import { listAllDeadLetters } from '../../pilot/dead-letters.ts';
import { recordRouterDeadLetters } from '../../router/dead-letters.ts';
import { recordDeadLetters } from '../../sinks/dead-letters.ts';
import { testLogger } from '../helpers/index.ts';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const web = { id: 'web', writeKeys: ['wk_moved_0123456'], writeKeyHashes: [], enabled: true, allowedOrigins: ['*'] };
const event = (messageId: string) => ({ v: 1, sourceId: 'web', type: 'track', event: 'E', messageId, userId: 'u', receivedAt: '2026-12-01T10:00:00.000Z' }) as unknown as Envelope;
const status: SyncStatus = {
  mode: 'plan',
  revision: 'abc',
  conditions: [{ type: 'Ready', status: 'True', reason: 'Planned', message: 'planned', at: '2026-12-01T10:00:00.000Z' }],
  inventory: ['apps/Deployment/ns/web'],
  plan: { apply: ['a'], prune: [] },
  updatedAt: '2026-12-01T10:00:00.000Z',
};

/** What an older Orrery's embedded store (PGlite) held: every domain, with ids past 1. */
async function fillOld(store: Store): Promise<void> {
  const logger = testLogger();
  await seedControlPlane(store, { sources: [web], destinations: [], routes: [] }, logger);
  await updateControlPlane(store, (doc) => ({ ...doc, destinations: [{ id: 'hook', type: 'webhook', enabled: true, url: 'https://example.com/h' }] }), { note: 'api' });
  await recordDeadLetters(store, [{ destinationId: 'hook', event: event('m-1'), attempts: 5, lastError: 'HTTP 500', httpStatus: 500, firstAttemptAt: Date.parse('2026-12-01T10:00:00Z') }]);
  await recordRouterDeadLetters(store, [
    {
      topic: 'orrery.dlq',
      partition: 0,
      offset: '7',
      timestamp: 1764583200000,
      key: 'anon-1',
      value: Buffer.from([0xff, 0x00, 0x7b]),
      headers: { 'x-orrery-reason': 'unparseable', 'x-orrery-error': 'not JSON', 'x-orrery-original-topic': 'orrery.raw', 'x-orrery-original-partition': '0', 'x-orrery-original-offset': '41' },
    },
  ]);
  await recordDeadLetters(store, [{ destinationId: 'hook', event: event('m-2'), attempts: 1, lastError: 'HTTP 400', httpStatus: 400, firstAttemptAt: Date.parse('2026-12-01T10:01:00Z') }]);
  const deploys = await createPgDeployLog(store);
  const push = { repository: 'registry.example.com/team/airflow', tag: '3.1.0' };
  const first = await deploys.record({ provider: 'generic', deliveryId: 'd-1', policy: 'airflow', push });
  await deploys.transition(first.deploy.id, 'committed', { sha: 'abc123', detail: 'direct' });
  await deploys.record({ provider: 'generic', deliveryId: undefined, policy: 'web', push: { ...push, tag: '3.1.1' } });
  await (await createPgSyncStatusStore(store, 'manifests/environments/dev')).save(status);
}

/** Everything a user sees of the store, through the domain modules. */
async function view(store: Store) {
  const logger = testLogger();
  const cp = await createPgControlPlane({ store, logger, pollMs: 3_600_000 });
  const controlPlane = cp.current();
  await cp.close();
  return {
    controlPlane,
    deadLetters: await listAllDeadLetters(store, { includeReplayed: true }),
    deploys: await (await createPgDeployLog(store)).list(),
    sync: await (await createPgSyncStatusStore(store, 'manifests/environments/dev')).load(),
  };
}

describe('an embedded PGlite store moved into SQLite (issue #19)', () => {
  it('carries the control plane, dead letters, deploys and sync status over with their ids, and keeps the old directory', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'orrery-store-move-'));
    dirs.push(dataDir);
    const from = join(dataDir, 'store');
    const old = await createPgliteStore({ dir: from, logger: testLogger() });
    await fillOld(old);
    const before = await view(old);
    expect(before.controlPlane.version).toBe(2);
    expect(before.deadLetters.map((l) => [l.id, l.stage])).toEqual([
      [1, 'sink'],
      [2, 'router'],
      [3, 'sink'],
    ]);

    // Still open by the older Orrery: refused, nothing moved.
    const store = createSqliteStore({ file: join(dataDir, 'store.sqlite'), logger: testLogger() });
    try {
      await expect(movePgliteStore({ from, store, logger: testLogger() })).rejects.toMatchObject({ code: 'STORE_LOCKED' });
      await old.close();

      const copied = await movePgliteStore({ from, store, logger: testLogger() });
      expect(copied).toMatchObject({ control_plane_versions: 2, sink_dead_letters: 2, router_dead_letters: 1, deploys: 2, gitops_sync: 1 });
      expect(existsSync(from)).toBe(false);
      expect(existsSync(`${from}.migrated`)).toBe(true);
      expect(await view(store)).toEqual(before);

      // New rows continue the ids: a letter of either stage after the moved ones, the next deploy after 2.
      await recordDeadLetters(store, [{ destinationId: 'hook', event: event('m-3'), attempts: 1, lastError: 'x', httpStatus: 500, firstAttemptAt: Date.now() }]);
      expect((await listAllDeadLetters(store, {})).map((l) => l.id)).toEqual([1, 2, 3, 4]);
      const next = await (await createPgDeployLog(store)).record({ provider: 'generic', deliveryId: 'd-2', policy: 'airflow', push: { repository: 'r', tag: 't' } });
      expect(next.deploy.id).toBe(3);
      // The next start finds nothing to move.
      expect(await movePgliteStore({ from, store, logger: testLogger() })).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it('refuses a PGlite store beside a SQLite store that already holds data, and moves nothing', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'orrery-store-move-'));
    dirs.push(dataDir);
    const from = join(dataDir, 'store');
    const old = await createPgliteStore({ dir: from, logger: testLogger() });
    await seedControlPlane(old, { sources: [web], destinations: [], routes: [] }, testLogger());
    await old.close();
    const store = createSqliteStore({ file: join(dataDir, 'store.sqlite'), logger: testLogger() });
    try {
      await seedControlPlane(store, { sources: [{ ...web, id: 'app' }], destinations: [], routes: [] }, testLogger());
      await expect(movePgliteStore({ from, store, logger: testLogger() })).rejects.toMatchObject({ code: 'STORE_MIGRATION_CONFLICT' });
      expect(existsSync(from)).toBe(true);
      expect((await view(store)).controlPlane.sources.map((s) => s.id)).toEqual(['app']);
    } finally {
      await store.close();
    }
  });
});
