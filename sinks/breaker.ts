/**
 * A circuit breaker per destination: after `threshold` failures in a row it opens, and
 * deliveries wait instead of hammering a destination that is down; after `cooldownMs` one
 * trial goes through (half-open), and its outcome closes or re-opens the breaker. Each
 * destination has its own worker and breaker, so one failing destination never slows the
 * others.
 */
export interface Breaker {
  /** ms to wait before the next attempt may go; 0 when it may go now. */
  waitMs(): number;
  success(): void;
  failure(): void;
  state(): 'closed' | 'open' | 'half-open';
}

export function createBreaker(opts: { threshold: number; cooldownMs: number; now?: () => number }): Breaker {
  const now = opts.now ?? Date.now;
  let failures = 0;
  let openedAt: number | undefined;
  return {
    waitMs() {
      if (openedAt === undefined) return 0;
      return Math.max(0, openedAt + opts.cooldownMs - now());
    },
    success() {
      failures = 0;
      openedAt = undefined;
    },
    failure() {
      failures++;
      if (failures >= opts.threshold) openedAt = now();
    },
    state() {
      if (openedAt === undefined) return 'closed';
      return now() >= openedAt + opts.cooldownMs ? 'half-open' : 'open';
    },
  };
}
