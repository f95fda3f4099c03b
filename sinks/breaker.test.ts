import { describe, expect, it } from 'vitest';
import { createBreaker } from './breaker.ts';

describe('circuit breaker', () => {
  it('opens after the threshold, half-opens after the cooldown, and closes on a success', () => {
    let t = 0;
    const b = createBreaker({ threshold: 3, cooldownMs: 1_000, now: () => t });
    b.failure();
    b.failure();
    expect(b.state()).toBe('closed');
    b.failure();
    expect(b.state()).toBe('open');
    expect(b.waitMs()).toBe(1_000);
    t = 1_000;
    expect(b.state()).toBe('half-open');
    expect(b.waitMs()).toBe(0);
    b.failure();
    expect(b.state()).toBe('open');
    t = 2_500;
    b.success();
    expect(b.state()).toBe('closed');
  });
});
