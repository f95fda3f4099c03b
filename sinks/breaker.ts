/**
 * A circuit breaker per destination: after `threshold` retriable failures in a row it
 * opens, and deliveries wait instead of hammering a destination that is down. After a
 * cooldown one trial goes through (half-open): a success closes the breaker at once, a
 * failure re-opens it for a longer cooldown, doubling from `cooldownMs` up to
 * `maxCooldownMs`. The cap is what bounds the time to notice recovery: a destination that
 * comes back is tried within `maxCooldownMs`, however long it was down. Each destination
 * has its own worker and breaker, so one failing destination never slows the others.
 *
 * Only retriable failures (network, 5xx, 408, 429) count: a destination that refuses an
 * event with a 4xx is up, and non-retriable failures leave the breaker as it is.
 */
export interface Breaker {
  /** ms to wait before the next attempt may go; 0 when it may go now. */
  waitMs(): number;
  /** The destination accepted a call: closes the breaker at once. */
  success(): void;
  /** A retriable failure; `retryAfterMs` (the destination's Retry-After) lengthens an open period. */
  failure(retryAfterMs?: number): void;
  state(): 'closed' | 'open' | 'half-open';
  /** The length of the current (or last) open period, in ms; 0 before the breaker ever opened. */
  cooldownMs(): number;
  /** Calls `listener` each time the breaker closes after being open; returns the unsubscribe. */
  onRecover(listener: () => void): () => void;
}

export interface BreakerOptions {
  /** Retriable failures in a row that open the breaker. */
  threshold: number;
  /** The first open period; each failed trial doubles it. */
  cooldownMs: number;
  /** The longest open period (raised to `cooldownMs` when below it). */
  maxCooldownMs: number;
  now?: () => number;
}

/** The open period after `reopens` failed trials in a row: pure, for the tests. */
export function breakerCooldown(reopens: number, opts: Pick<BreakerOptions, 'cooldownMs' | 'maxCooldownMs'>): number {
  const cap = Math.max(opts.cooldownMs, opts.maxCooldownMs);
  return Math.min(cap, opts.cooldownMs * 2 ** Math.min(reopens, 30));
}

/**
 * @example
 *   const breaker = createBreaker({ threshold: 5, cooldownMs: 100, maxCooldownMs: 1_000 });
 *   if (breaker.waitMs() === 0) try { await send(); breaker.success(); } catch { breaker.failure(); }
 */
export function createBreaker(opts: BreakerOptions): Breaker {
  const now = opts.now ?? Date.now;
  let failures = 0;
  /** Failed trials since the breaker last closed: the exponent of the cooldown. */
  let reopens = 0;
  let openedAt: number | undefined;
  let cooldown = 0;
  const listeners = new Set<() => void>();

  function open(retryAfterMs: number | undefined): void {
    openedAt = now();
    cooldown = Math.max(breakerCooldown(reopens, opts), retryAfterMs ?? 0);
  }

  function state(): 'closed' | 'open' | 'half-open' {
    if (openedAt === undefined) return 'closed';
    return now() >= openedAt + cooldown ? 'half-open' : 'open';
  }

  return {
    waitMs() {
      if (openedAt === undefined) return 0;
      return Math.max(0, openedAt + cooldown - now());
    },
    success() {
      const wasOpen = openedAt !== undefined;
      failures = 0;
      reopens = 0;
      openedAt = undefined;
      if (wasOpen) for (const l of [...listeners]) l();
    },
    failure(retryAfterMs) {
      failures++;
      const s = state();
      if (s === 'half-open') {
        // The trial failed: open again, for longer.
        reopens++;
        open(retryAfterMs);
      } else if (s === 'open') {
        // A call sent before the breaker opened, failing late: it says nothing new about
        // the destination, unless the destination asked for a longer pause.
        if (retryAfterMs !== undefined && openedAt! + cooldown < now() + retryAfterMs) cooldown = now() + retryAfterMs - openedAt!;
      } else if (failures >= opts.threshold) {
        open(retryAfterMs);
      }
    },
    state,
    cooldownMs: () => cooldown,
    onRecover(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
