import { isRetriable } from './errors.ts';

export interface BackoffPolicy {
  /** Delay before the first retry, in ms. */
  initialMs: number;
  /** Growth per attempt. */
  factor: number;
  /** Cap on one delay, in ms. */
  maxMs: number;
  /** Fraction of the delay that is randomised, 0..1 (0.2 → ±20 %). */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 300, factor: 2, maxMs: 30_000, jitter: 0.2 };

/**
 * The delay before retry number `attempt` (1-based). Pure: the random source is passed in,
 * so tests can pin it.
 *
 * @example backoffDelay(3, DEFAULT_BACKOFF, () => 0.5) // 1200
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const base = Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, attempt - 1));
  const spread = base * policy.jitter;
  const delay = base - spread + random() * 2 * spread;
  return Math.max(0, Math.min(policy.maxMs, Math.round(delay)));
}

export interface RetryOptions extends Partial<BackoffPolicy> {
  /** Retries after the first try (so `retries: 3` means up to 4 calls). */
  retries?: number;
  /** Decides whether an error is worth another try; defaults to {@link isRetriable}. */
  shouldRetry?: (err: unknown, attempt: number) => boolean;
  /** Called before each wait; for logging and metrics. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Aborts the waits (e.g. on shutdown); the last error is thrown. */
  signal?: AbortSignal;
  random?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * Calls `fn` until it succeeds, the error is not retriable, or the retries run out.
 * Waits follow {@link backoffDelay} with jitter.
 *
 * @example
 *   const rows = await retry(() => store.query('select 1'), { retries: 5, initialMs: 100 });
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const policy: BackoffPolicy = {
    initialMs: opts.initialMs ?? DEFAULT_BACKOFF.initialMs,
    factor: opts.factor ?? DEFAULT_BACKOFF.factor,
    maxMs: opts.maxMs ?? DEFAULT_BACKOFF.maxMs,
    jitter: opts.jitter ?? DEFAULT_BACKOFF.jitter,
  };
  const retries = opts.retries ?? 5;
  const shouldRetry = opts.shouldRetry ?? isRetriable;
  const sleep = opts.sleep ?? abortableSleep;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt > retries || !shouldRetry(err, attempt) || opts.signal?.aborted) throw err;
      const delay = backoffDelay(attempt, policy, opts.random);
      opts.onRetry?.(err, attempt, delay);
      await sleep(delay, opts.signal);
      if (opts.signal?.aborted) throw err;
    }
  }
}

/** setTimeout as a promise that resolves early (without throwing) when the signal aborts. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
