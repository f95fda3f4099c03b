import { describe, expect, it } from 'vitest';
import { breakerCooldown, createBreaker } from './breaker.ts';

function clocked(opts: { threshold?: number; cooldownMs?: number; maxCooldownMs?: number } = {}) {
  const clock = { t: 0 };
  const breaker = createBreaker({ threshold: opts.threshold ?? 3, cooldownMs: opts.cooldownMs ?? 100, maxCooldownMs: opts.maxCooldownMs ?? 1_000, now: () => clock.t });
  return { clock, breaker };
}

describe('circuit breaker', () => {
  it('opens after the threshold, half-opens after the first cooldown, and closes on a success', () => {
    const { clock, breaker: b } = clocked();
    b.failure();
    b.failure();
    expect(b.state()).toBe('closed');
    b.failure();
    expect(b.state()).toBe('open');
    expect(b.waitMs()).toBe(100);
    clock.t = 100;
    expect(b.state()).toBe('half-open');
    expect(b.waitMs()).toBe(0);
    b.success();
    expect(b.state()).toBe('closed');
    expect(b.waitMs()).toBe(0);
  });

  it('each failed trial doubles the cooldown, up to the cap; a success starts again from the first', () => {
    const { clock, breaker: b } = clocked();
    for (let i = 0; i < 3; i++) b.failure();
    const cooldowns: number[] = [b.cooldownMs()];
    for (let trial = 0; trial < 6; trial++) {
      clock.t += b.waitMs();
      expect(b.state()).toBe('half-open');
      b.failure();
      expect(b.state()).toBe('open');
      cooldowns.push(b.cooldownMs());
    }
    expect(cooldowns).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000]);
    clock.t += b.waitMs();
    b.success();
    // Closed again: it takes the threshold to open it, and then for the first cooldown.
    b.failure();
    b.failure();
    expect(b.state()).toBe('closed');
    b.failure();
    expect(b.cooldownMs()).toBe(100);
  });

  it('a failure that comes back while open (sent before it opened) neither extends nor escalates it', () => {
    const { clock, breaker: b } = clocked();
    for (let i = 0; i < 3; i++) b.failure();
    clock.t = 60;
    b.failure();
    b.failure();
    expect(b.waitMs()).toBe(40);
    clock.t = 100;
    expect(b.state()).toBe('half-open');
  });

  it('Retry-After lengthens the open period beyond its own cooldown', () => {
    const { clock, breaker: b } = clocked();
    b.failure();
    b.failure();
    b.failure(5_000);
    expect(b.waitMs()).toBe(5_000);
    clock.t = 1_000;
    b.failure(8_000);
    expect(b.waitMs()).toBe(8_000);
    clock.t = 9_000;
    expect(b.state()).toBe('half-open');
    b.failure();
    // Back to its own schedule: the second cooldown.
    expect(b.cooldownMs()).toBe(200);
  });

  it('a success between failures resets the count', () => {
    const { breaker: b } = clocked();
    b.failure();
    b.failure();
    b.success();
    b.failure();
    b.failure();
    expect(b.state()).toBe('closed');
  });

  it('tells its listeners when it closes after being open, and only then', () => {
    const { clock, breaker: b } = clocked();
    let recovered = 0;
    const off = b.onRecover(() => recovered++);
    b.success();
    expect(recovered).toBe(0);
    for (let i = 0; i < 3; i++) b.failure();
    clock.t += b.waitMs();
    b.success();
    expect(recovered).toBe(1);
    off();
    for (let i = 0; i < 3; i++) b.failure();
    b.success();
    expect(recovered).toBe(1);
  });

  it('the cooldown schedule: doubling from the first, capped, never below the first', () => {
    expect([0, 1, 2, 3, 4, 5, 60].map((n) => breakerCooldown(n, { cooldownMs: 100, maxCooldownMs: 1_000 }))).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000]);
    expect(breakerCooldown(3, { cooldownMs: 2_000, maxCooldownMs: 1_000 })).toBe(2_000);
  });
});
