import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ControlPlaneConfig, ControlPlaneSnapshot } from '../../core/control-plane.ts';
import {
  createPgControlPlane,
  seedControlPlane,
  updateControlPlane,
  type PgControlPlaneOptions,
} from '../../core/control-plane-pg.ts';
import type { ControlPlaneSource } from '../../core/control-plane-source.ts';
import { createPgStore } from '../../core/store/pg.ts';
import type { Store } from '../../core/store/types.ts';
import { hashWriteKey } from '../../ingest/sources.ts';
import { serviceEnv, testLogger, uniqueName, waitFor } from '../helpers/index.ts';

const logger = testLogger();
const KEY_WEB = 'wk_web_plain_0123456789';
const KEY_APP = 'wk_app_plain_9876543210';

function seedDoc(overrides: Partial<ControlPlaneConfig> = {}): ControlPlaneConfig {
  return {
    sources: [
      { id: 'web', writeKeys: [KEY_WEB, KEY_WEB], writeKeyHashes: [], enabled: true, allowedOrigins: ['*'] },
      { id: 'app', writeKeys: [KEY_APP], writeKeyHashes: [], enabled: true, allowedOrigins: ['https://app.example.com'] },
    ],
    destinations: [{ id: 'hook', type: 'webhook', enabled: true, url: 'https://example.com/hook' }],
    routes: [{ source: 'web', destination: 'hook', enabled: true, transforms: [] }],
    ...overrides,
  };
}

/**
 * Every test gets its own schema (an empty database as far as the control plane can tell)
 * and its own channel, since NOTIFY channels are shared by the whole database.
 */
function setup() {
  const schema = uniqueName('cp').toLowerCase();
  const channel = uniqueName('cp_ch').toLowerCase();
  const stores: Store[] = [];
  const sources: ControlPlaneSource[] = [];
  /** A store as another process would open it: same schema, its own pool. */
  function openStore(): Store {
    const store = createPgStore({ url: serviceEnv('DATABASE_URL'), schema });
    stores.push(store);
    return store;
  }
  async function open(store: Store, extra: Partial<PgControlPlaneOptions> = {}): Promise<ControlPlaneSource> {
    // An hour: only NOTIFY (or a reconnect) can explain a change seen within a test.
    const cp = await createPgControlPlane({ store, logger, channel, pollMs: 3_600_000, ...extra });
    sources.push(cp);
    return cp;
  }
  async function versions(store: Store): Promise<Array<{ version: number; doc: string; seed_hash: string | null; note: string | null }>> {
    const { rows } = await store.query<{ version: string; doc: string; seed_hash: string | null; note: string | null }>(
      'select version, doc::text as doc, seed_hash, note from control_plane_versions order by version',
    );
    return rows.map((r) => ({ ...r, version: Number(r.version) }));
  }
  async function cleanup(): Promise<void> {
    await Promise.allSettled(sources.map((s) => s.close()));
    const first = stores[0];
    if (first) await first.query(`drop schema if exists ${schema} cascade`).catch(() => {});
    await Promise.allSettled(stores.map((s) => s.close()));
  }
  return { schema, channel, openStore, open, versions, cleanup };
}

let env: ReturnType<typeof setup>;
afterEach(async () => {
  await env.cleanup();
});

describe('control plane in Postgres', () => {
  it('seeds an empty database and serves it, write keys as hashes', async () => {
    env = setup();
    const store = env.openStore();
    const version = await seedControlPlane(store, seedDoc(), logger, { channel: env.channel });
    expect(version).toBeGreaterThan(0);

    const cp = await env.open(store);
    const snap = cp.current();
    expect(snap.version).toBe(version);
    expect(snap.sources.map((s) => s.id)).toEqual(['web', 'app']);
    // Duplicates collapse to one hash; the same hash ingest computes.
    expect(snap.sources[0]!.writeKeys).toEqual([]);
    expect(snap.sources[0]!.writeKeyHashes).toEqual([await hashWriteKey(KEY_WEB)]);
    expect(snap.destinations).toEqual(seedDoc().destinations);
    expect(snap.routes).toEqual(seedDoc().routes);

    const rows = await env.versions(store);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.seed_hash).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('starts empty at version 0 when nothing was ever stored', async () => {
    env = setup();
    const cp = await env.open(env.openStore());
    expect(cp.current()).toEqual({ version: 0, sources: [], destinations: [], routes: [] });
  });

  it('the same seed again adds no version, even written in another key order', async () => {
    env = setup();
    const store = env.openStore();
    const first = await seedControlPlane(store, seedDoc(), logger, { channel: env.channel });
    const reordered = JSON.parse(JSON.stringify(seedDoc(), (_k, v: unknown) =>
      v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).reverse()) : v,
    )) as ControlPlaneConfig;
    expect(await seedControlPlane(store, seedDoc(), logger, { channel: env.channel })).toBe(first);
    expect(await seedControlPlane(store, reordered, logger, { channel: env.channel })).toBe(first);
    expect(await env.versions(store)).toHaveLength(1);
  });

  it('a changed seed becomes a new version', async () => {
    env = setup();
    const store = env.openStore();
    const first = await seedControlPlane(store, seedDoc(), logger, { channel: env.channel });
    const changed = seedDoc({ routes: [] });
    const second = await seedControlPlane(store, changed, logger, { channel: env.channel });
    expect(second).toBeGreaterThan(first);
    const cp = await env.open(store);
    expect(cp.current().version).toBe(second);
    expect(cp.current().routes).toEqual([]);
  });

  it('seeding from several processes at once stores one version', async () => {
    env = setup();
    const stores = [env.openStore(), env.openStore(), env.openStore()];
    const results = await Promise.all(stores.map((s) => seedControlPlane(s, seedDoc(), logger, { channel: env.channel })));
    expect(new Set(results).size).toBe(1);
    expect(await env.versions(stores[0]!)).toHaveLength(1);
  });

  it('API edits survive a restart with an unchanged seed, and yield to a changed one', async () => {
    env = setup();
    const before = env.openStore();
    await seedControlPlane(before, seedDoc(), logger, { channel: env.channel });
    const edited = await updateControlPlane(
      before,
      (doc) => ({ ...doc, routes: [...doc.routes, { source: 'app', destination: 'hook', enabled: true, transforms: [] }] }),
      { note: 'api: route app', channel: env.channel },
    );
    await before.close();

    // The restart: a new pool, the same YAML.
    const after = env.openStore();
    expect(await seedControlPlane(after, seedDoc(), logger, { channel: env.channel })).toBe(edited.version);
    const cp = await env.open(after);
    expect(cp.current().version).toBe(edited.version);
    expect(cp.current().routes.map((r) => r.source)).toEqual(['web', 'app']);
    const rows = await env.versions(after);
    expect(rows.at(-1)).toMatchObject({ version: edited.version, seed_hash: null, note: 'api: route app' });

    // Editing the YAML wins as a whole.
    const reseeded = await seedControlPlane(after, seedDoc({ routes: [] }), logger, { channel: env.channel });
    expect(reseeded).toBeGreaterThan(edited.version);
    await waitFor(() => cp.current().version === reseeded, { what: 'the reseeded version' });
    expect(cp.current().routes).toEqual([]);
  });

  it('never stores plain write keys, from the seed or from an update', async () => {
    env = setup();
    const store = env.openStore();
    await seedControlPlane(store, seedDoc(), logger, { channel: env.channel });
    const rotated = 'wk_rotated_plain_555555';
    const snap = await updateControlPlane(
      store,
      (doc) => ({ ...doc, sources: doc.sources.map((s) => (s.id === 'web' ? { ...s, writeKeys: [rotated] } : s)) }),
      { channel: env.channel },
    );
    expect(snap.sources[0]!.writeKeys).toEqual([]);
    expect(snap.sources[0]!.writeKeyHashes).toEqual([await hashWriteKey(KEY_WEB), await hashWriteKey(rotated)]);

    const { rows } = await store.query<{ everything: string }>('select string_agg(t::text, \'\n\') as everything from control_plane_versions t');
    const stored = rows[0]!.everything;
    for (const key of [KEY_WEB, KEY_APP, rotated]) {
      expect(stored).not.toContain(key);
      expect(stored).toContain(await hashWriteKey(key));
    }
  });

  it('an update with a stale expectedVersion fails with CONTROL_PLANE_CONFLICT', async () => {
    env = setup();
    const store = env.openStore();
    const v1 = await seedControlPlane(store, seedDoc(), logger, { channel: env.channel });
    const v2 = await updateControlPlane(store, (doc) => ({ ...doc, routes: [] }), { expectedVersion: v1, channel: env.channel });
    expect(v2.version).toBeGreaterThan(v1);
    await expect(
      updateControlPlane(store, (doc) => ({ ...doc, destinations: [] }), { expectedVersion: v1, channel: env.channel }),
    ).rejects.toMatchObject({ code: 'CONTROL_PLANE_CONFLICT', status: 409, retriable: false, details: { currentVersion: v2.version } });
    expect(await env.versions(store)).toHaveLength(2);
  });

  it('an invalid update fails with CONTROL_PLANE_INVALID naming the field, and writes nothing', async () => {
    env = setup();
    const store = env.openStore();
    await seedControlPlane(store, seedDoc(), logger, { channel: env.channel });
    const err = await updateControlPlane(
      store,
      (doc) => ({ ...doc, routes: [{ source: 'web', destination: 'nowhere', enabled: true, transforms: [] }] }),
      { channel: env.channel },
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CONTROL_PLANE_INVALID', status: 400, retriable: false });
    expect((err as Error).message).toContain('routes.0.destination');
    expect((err as Error).message).toContain('nowhere');

    // Two sources with one key: the schema cannot see it, ingest could not resolve it.
    const shared = await updateControlPlane(
      store,
      (doc) => ({ ...doc, sources: doc.sources.map((s) => (s.id === 'app' ? { ...s, writeKeys: [KEY_WEB] } : s)) }),
      { channel: env.channel },
    ).catch((e: unknown) => e);
    expect(shared).toMatchObject({ code: 'CONTROL_PLANE_INVALID', status: 400 });
    expect((shared as Error).message).toContain('sources.1.writeKeys');
    expect((shared as Error).message).not.toContain(KEY_WEB);

    expect(await env.versions(store)).toHaveLength(1);
  });

  it('another process sees an update through NOTIFY, and its subscribers are called', async () => {
    env = setup();
    const storeA = env.openStore();
    const storeB = env.openStore();
    await seedControlPlane(storeA, seedDoc(), logger, { channel: env.channel });
    const a = await env.open(storeA);
    const b = await env.open(storeB);
    const seen: ControlPlaneSnapshot[] = [];
    b.subscribe((snap) => seen.push(snap));
    const gone = vi.fn();
    const unsubscribe = b.subscribe(gone);
    unsubscribe();

    const snap = await updateControlPlane(storeA, (doc) => ({ ...doc, destinations: [...doc.destinations, { id: 'amp', type: 'amplitude', enabled: true }] }), {
      channel: env.channel,
    });
    await waitFor(() => b.current().version === snap.version, { what: 'process B to see the update' });
    await waitFor(() => a.current().version === snap.version, { what: 'process A to see its own update' });
    expect(b.current()).toEqual(snap);
    expect(seen.map((s) => s.version)).toEqual([snap.version]);
    expect(seen[0]).toBe(b.current());
    expect(gone).not.toHaveBeenCalled();
  });

  it('snapshots are deep-frozen', async () => {
    env = setup();
    const store = env.openStore();
    await seedControlPlane(store, seedDoc(), logger, { channel: env.channel });
    const cp = await env.open(store);
    const snap = cp.current();
    expect(Object.isFrozen(snap)).toBe(true);
    expect(Object.isFrozen(snap.sources[0]!.writeKeyHashes)).toBe(true);
    expect(Object.isFrozen(snap.destinations[0])).toBe(true);
    const updated = await updateControlPlane(store, (doc) => doc, { channel: env.channel });
    expect(Object.isFrozen(updated.routes[0])).toBe(true);
  });

  it('catches up after its listening connection is dropped', async () => {
    env = setup();
    const store = env.openStore();
    await seedControlPlane(store, seedDoc(), logger, { channel: env.channel });
    const cp = await env.open(store);
    const app = `orrery-listen:${env.channel}`;
    const pidOf = async () =>
      (await store.query<{ pid: number }>('select pid from pg_stat_activity where application_name = $1', [app])).rows[0]?.pid;
    const before = await pidOf();
    expect(before).toBeDefined();

    await store.query('select pg_terminate_backend($1)', [before]);
    // Most likely made while the listener is down: only the re-read on reconnect can find it.
    const snap = await updateControlPlane(store, (doc) => ({ ...doc, routes: [] }), { channel: env.channel });
    await waitFor(() => cp.current().version === snap.version, { what: 'the change made while disconnected' });
    const after = await waitFor(async () => {
      const pid = await pidOf();
      return pid !== undefined && pid !== before && pid;
    }, { what: 'a new listening connection' });
    expect(after).not.toBe(before);

    // And NOTIFY works again on the new connection.
    const next = await updateControlPlane(store, (doc) => ({ ...doc, destinations: [...doc.destinations, { id: 'b', type: 'webhook', enabled: true }] }), {
      channel: env.channel,
    });
    await waitFor(() => cp.current().version === next.version, { what: 'a notify after the reconnect' });
  });
});
