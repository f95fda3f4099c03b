import { describe, expect, it } from 'vitest';
import { takeTokens } from './token-bucket.ts';

describe('takeTokens', () => {
  const bucket = { capacity: 3, refillPerSec: 2 };

  it('starts full and takes down to empty', () => {
    let state = takeTokens(undefined, 0, bucket).state;
    expect(state.tokens).toBe(2);
    state = takeTokens(state, 0, bucket).state;
    const last = takeTokens(state, 0, bucket);
    expect(last.result).toMatchObject({ allowed: true, remaining: 0, retryAfterMs: 0, resetMs: 1500 });
    const refused = takeTokens(last.state, 0, bucket);
    expect(refused.result).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 500 });
  });

  it('refills with elapsed time, up to capacity', () => {
    const empty = { tokens: 0, at: 0 };
    expect(takeTokens(empty, 499, bucket).result.allowed).toBe(false);
    expect(takeTokens(empty, 500, bucket).result.allowed).toBe(true);
    expect(takeTokens(empty, 60_000, bucket).result.remaining).toBe(2);
  });

  it('a clock going backwards does not add tokens', () => {
    const result = takeTokens({ tokens: 0, at: 1_000 }, 0, bucket).result;
    expect(result.allowed).toBe(false);
  });
});
