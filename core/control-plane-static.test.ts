import { describe, expect, it, vi } from 'vitest';
import { ControlPlaneConfig } from './control-plane.ts';
import { createStaticControlPlane, snapshotOf } from './control-plane-static.ts';

const config = ControlPlaneConfig.parse({
  sources: [{ id: 'web', writeKeys: ['wk_live_0123456789'] }],
  destinations: [{ id: 'hook', type: 'webhook', url: 'https://example.com/hook' }],
  routes: [{ source: 'web', destination: 'hook', transforms: [{ op: 'drop', field: 'context.ip' }] }],
});

describe('createStaticControlPlane', () => {
  it('serves the config as version 0, write keys untouched', () => {
    const cp = createStaticControlPlane(config);
    const snap = cp.current();
    expect(snap.version).toBe(0);
    expect(snap.sources).toEqual(config.sources);
    expect(snap.sources[0]!.writeKeys).toEqual(['wk_live_0123456789']);
    expect(snap.sources[0]!.writeKeyHashes).toEqual([]);
    expect(snap.destinations).toEqual(config.destinations);
    expect(snap.routes).toEqual(config.routes);
  });

  it('returns the same deep-frozen snapshot every time', () => {
    const cp = createStaticControlPlane(config);
    const snap = cp.current();
    expect(cp.current()).toBe(snap);
    expect(Object.isFrozen(snap)).toBe(true);
    expect(Object.isFrozen(snap.sources)).toBe(true);
    expect(Object.isFrozen(snap.sources[0]!.writeKeys)).toBe(true);
    expect(Object.isFrozen(snap.routes[0]!.transforms[0])).toBe(true);
    expect(() => (snap.sources as unknown[]).push({})).toThrow(TypeError);
  });

  it('neither freezes nor aliases the caller\'s config', () => {
    const mine = structuredClone(config);
    const cp = createStaticControlPlane(mine);
    expect(Object.isFrozen(mine.sources)).toBe(false);
    mine.sources[0]!.enabled = false;
    expect(cp.current().sources[0]!.enabled).toBe(true);
  });

  it('never calls subscribers; unsubscribe and close are harmless', async () => {
    const cp = createStaticControlPlane(config);
    const onChange = vi.fn();
    const unsubscribe = cp.subscribe(onChange);
    unsubscribe();
    unsubscribe();
    await cp.close();
    expect(onChange).not.toHaveBeenCalled();
    expect(cp.current().version).toBe(0);
  });
});

describe('snapshotOf', () => {
  it('keeps only the control-plane fields, with the version', () => {
    const snap = snapshotOf(7, { ...config, extra: 1 } as ControlPlaneConfig);
    expect(Object.keys(snap).sort()).toEqual(['destinations', 'routes', 'sources', 'version']);
    expect(snap.version).toBe(7);
  });
});
