import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgControlPlane, seedControlPlane, updateControlPlane } from '../core/control-plane-pg.ts';
import { createLogger } from '../core/logger.ts';
import { createSqliteStore } from '../core/store/sqlite.ts';
import type { Store } from '../core/store/types.ts';
import { waitFor } from '../test/helpers/index.ts';
import { DEMO_KEY_FILE, demoBanner, demoControlPlane, demoSenderSecrets, ensureDemo, ensureDemoSecret, localBaseUrl } from './demo-setup.ts';

const logger = createLogger({ level: 'silent' });
const BASE = 'http://127.0.0.1:8080';

describe('localBaseUrl', () => {
  it('uses loopback for the wildcard addresses, and brackets IPv6', () => {
    expect(localBaseUrl('0.0.0.0', 8080)).toBe('http://127.0.0.1:8080');
    expect(localBaseUrl('::', 81)).toBe('http://127.0.0.1:81');
    expect(localBaseUrl('10.1.2.3', 80)).toBe('http://10.1.2.3:80');
    expect(localBaseUrl('::1', 80)).toBe('http://[::1]:80');
  });
});

describe('demoBanner', () => {
  it('prints a curl line that sends a track event with the key', () => {
    const text = demoBanner({ state: 'created', writeKey: 'demo_k', keyFile: '/d/demo-write-key' }, BASE);
    const curl = text.split('\n').find((l) => l.trim().startsWith('curl '));
    expect(curl?.trim()).toBe(
      `curl -sS -u 'demo_k:' -H 'content-type: application/json' -d '{"userId":"demo-user","event":"Demo Event","properties":{"hello":"world"}}' ${BASE}/v1/track`,
    );
  });
});

/** On the embedded store (SQLite) in memory: the same control-plane code as `orrery start`. */
describe('ensureDemo', () => {
  let store: Store;
  let dir: string;
  beforeAll(async () => {
    store = createSqliteStore({ file: ':memory:', logger });
  });
  afterAll(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('first start: creates source, destination and route, the key in a 0600 file and only hashed in the store', async () => {
    dir = await mkdtemp(join(tmpdir(), 'orrery-demo-setup-'));
    const controlPlane = await createPgControlPlane({ store, logger, pollMs: 3_600_000 });
    try {
      const demo = await ensureDemo({ store, controlPlane, dataDir: dir, baseUrl: BASE, logger });
      expect(demo.state).toBe('created');
      if (demo.state === 'none') return;
      expect(demo.writeKey).toMatch(/^demo_[A-Za-z0-9_-]{24}$/);
      const keyFile = join(dir, DEMO_KEY_FILE);
      expect((await readFile(keyFile, 'utf8')).trim()).toBe(demo.writeKey);
      expect((await stat(keyFile)).mode & 0o777).toBe(0o600);

      // Served at once, by the running control plane.
      const snap = controlPlane.current();
      expect(snap.version).toBe(1);
      expect(snap.sources.map((s) => s.id)).toEqual(['demo']);
      expect(snap.destinations).toEqual([
        expect.objectContaining({ id: 'demo-webhook', type: 'webhook', url: `${BASE}/pilot/demo-webhook`, allowPrivateNetwork: true, secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]{32}$/) }),
      ]);
      // The secret the destination signs with is the one the demo receiver takes.
      expect(demoSenderSecrets(snap)).toEqual([snap.destinations[0]!.secret]);
      expect(snap.routes).toEqual([expect.objectContaining({ source: 'demo', destination: 'demo-webhook', enabled: true })]);
      const { rows } = await store.query<{ doc: string }>('select cast(doc as text) as doc from control_plane_versions');
      expect(rows.map((r) => r.doc).join()).not.toContain(demo.writeKey);

      // A later start finds it and prints it again, without creating anything.
      expect(await ensureDemo({ store, controlPlane, dataDir: dir, baseUrl: BASE, logger })).toEqual({ state: 'exists', writeKey: demo.writeKey, keyFile });
      expect(controlPlane.current().version).toBe(1);

      // Its key rotated away: nothing to print, and nothing recreated.
      const rotated = await updateControlPlane(store, (doc) => ({ ...doc, sources: doc.sources.map((s) => ({ ...s, writeKeyHashes: [], writeKeys: ['demo_rotated_key_0123'] })) }));
      await waitForVersion(controlPlane, rotated.version);
      expect(await ensureDemo({ store, controlPlane, dataDir: dir, baseUrl: BASE, logger })).toMatchObject({ state: 'none' });

      // Deleted: never set up again.
      const deleted = await updateControlPlane(store, () => ({ sources: [], destinations: [], routes: [] }));
      await waitForVersion(controlPlane, deleted.version);
      expect(await ensureDemo({ store, controlPlane, dataDir: dir, baseUrl: BASE, logger })).toMatchObject({ state: 'none', reason: 'no demo source' });
      expect(controlPlane.current().sources).toEqual([]);
    } finally {
      await controlPlane.close();
    }
  });

  it('upgrade: a demo destination from before signing gets a secret at start, once; other destinations are left alone', async () => {
    const old = createSqliteStore({ file: ':memory:', logger });
    try {
      // What a first start wrote before the demo receiver wanted signatures: no secret.
      const before = demoControlPlane('demo_old_key_0123456789', BASE);
      const { secret: _dropped, ...unsigned } = before.destinations[0]!;
      const admins = { id: 'mine', type: 'webhook', enabled: true, url: 'http://127.0.0.1:9/pilot/demo-webhook', allowPrivateNetwork: true };
      await updateControlPlane(old, () => ({ ...before, destinations: [unsigned, admins] }), { expectedVersion: 0 });
      const controlPlane = await createPgControlPlane({ store: old, logger, pollMs: 3_600_000 });
      try {
        expect(demoSenderSecrets(controlPlane.current())).toEqual([]);
        expect(await ensureDemoSecret({ store: old, controlPlane, logger })).toBe('added');
        const snap = controlPlane.current();
        const demo = snap.destinations.find((d) => d.id === 'demo-webhook')!;
        expect(demo.secret).toMatch(/^whsec_/);
        expect(snap.destinations.find((d) => d.id === 'mine')).not.toHaveProperty('secret');
        expect(demoSenderSecrets(snap)).toEqual([demo.secret]);
        // The next start finds it signed and writes nothing.
        expect(await ensureDemoSecret({ store: old, controlPlane, logger })).toBe('unchanged');
        expect(controlPlane.current().version).toBe(snap.version);
      } finally {
        await controlPlane.close();
      }
    } finally {
      await old.close();
    }
  });

  it('is not set up when the config file seeded the control plane', async () => {
    const seeded = createSqliteStore({ file: ':memory:', logger });
    const dataDir = await mkdtemp(join(tmpdir(), 'orrery-demo-seeded-'));
    try {
      await seedControlPlane(seeded, { sources: [{ id: 'web', writeKeys: ['wk_web_0123456'], writeKeyHashes: [], enabled: true, allowedOrigins: ['*'] }], destinations: [], routes: [] }, logger);
      // A key file left from elsewhere changes nothing: there is no demo source.
      await writeFile(join(dataDir, DEMO_KEY_FILE), 'wk_web_0123456\n');
      const controlPlane = await createPgControlPlane({ store: seeded, logger, pollMs: 3_600_000 });
      expect(await ensureDemo({ store: seeded, controlPlane, dataDir, baseUrl: BASE, logger })).toMatchObject({ state: 'none' });
      expect(controlPlane.current().sources.map((s) => s.id)).toEqual(['web']);
      await controlPlane.close();
    } finally {
      await seeded.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

function waitForVersion(cp: { current(): { version: number } }, version: number): Promise<true> {
  return waitFor(() => cp.current().version === version, { what: `control-plane version ${version}` });
}
