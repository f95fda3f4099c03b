import { describe, expect, it } from 'vitest';
import { OrreryError } from './errors.ts';
import { backoffDelay, DEFAULT_BACKOFF, retry } from './retry.ts';

const noSleep = async () => {};

describe('backoffDelay', () => {
  it('grows by the factor and is capped', () => {
    const mid = () => 0.5;
    expect(backoffDelay(1, DEFAULT_BACKOFF, mid)).toBe(300);
    expect(backoffDelay(3, DEFAULT_BACKOFF, mid)).toBe(1200);
    expect(backoffDelay(30, DEFAULT_BACKOFF, mid)).toBe(30_000);
  });

  it('jitter spreads the delay within ±jitter', () => {
    expect(backoffDelay(2, DEFAULT_BACKOFF, () => 0)).toBe(480);
    expect(backoffDelay(2, DEFAULT_BACKOFF, () => 0.999999)).toBe(720);
  });
});

describe('retry', () => {
  const transient = () => new OrreryError('T', 'transient', { retriable: true });

  it('retries retriable errors until success', async () => {
    let calls = 0;
    const result = await retry(
      async () => {
        if (++calls < 3) throw transient();
        return 'ok';
      },
      { sleep: noSleep },
    );
    expect(result).toBe('ok');
    expect(calls).toBe(3);
  });

  it('gives up after `retries` and throws the last error', async () => {
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
          throw transient();
        },
        { retries: 2, sleep: noSleep },
      ),
    ).rejects.toMatchObject({ code: 'T' });
    expect(calls).toBe(3);
  });

  it('does not retry non-retriable or programming errors', async () => {
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
          throw new TypeError('bug');
        },
        { sleep: noSleep },
      ),
    ).rejects.toThrow(TypeError);
    expect(calls).toBe(1);
  });

  it('reports each wait to onRetry with the backoff delay', async () => {
    const waits: Array<[number, number]> = [];
    let calls = 0;
    await retry(
      async () => {
        if (++calls < 3) throw transient();
      },
      { sleep: noSleep, random: () => 0.5, initialMs: 10, onRetry: (_e, attempt, delay) => waits.push([attempt, delay]) },
    );
    expect(waits).toEqual([
      [1, 10],
      [2, 20],
    ]);
  });

  it('stops waiting when the signal aborts', async () => {
    const ctl = new AbortController();
    let calls = 0;
    const started = Date.now();
    const p = retry(
      async () => {
        calls++;
        throw transient();
      },
      { signal: ctl.signal, initialMs: 60_000 },
    );
    setTimeout(() => ctl.abort(), 20);
    await expect(p).rejects.toMatchObject({ code: 'T' });
    expect(calls).toBe(1);
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});
