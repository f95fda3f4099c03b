import { DeliveryError } from './types.ts';

const EXCERPT = 500;

/** Retry-After as seconds or an HTTP date, in ms from `now`; undefined when absent or bad. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - now) : undefined;
}

/**
 * The retry policy for HTTP destinations, in one place: 2xx is delivered; 408, 429 and
 * 5xx are retried (honouring Retry-After); any other 4xx is refused for good.
 */
export async function checkResponse(res: Response, now: number, what: string): Promise<void> {
  if (res.ok) return drain(res);
  const body = await res.text().catch(() => '');
  checkStatus(res.status, res.headers.get('retry-after'), body, now, what);
}

/** The same policy on a bare status: throws the DeliveryError for anything but 2xx. */
export function checkStatus(status: number, retryAfter: string | null, body: string, now: number, what: string): void {
  if (status >= 200 && status < 300) return;
  const retriable = status === 408 || status === 429 || status >= 500;
  throw new DeliveryError(`${what} answered ${status}`, {
    retriable,
    httpStatus: status,
    retryAfterMs: parseRetryAfter(retryAfter, now),
    bodyExcerpt: body.slice(0, EXCERPT),
  });
}

/** A network failure (refused, reset, DNS, timeout) as a retriable DeliveryError. */
export function unreachable(err: unknown, what: string): DeliveryError {
  if (err instanceof DeliveryError) return err;
  return new DeliveryError(`${what} unreachable: ${(err as Error).message}`, { retriable: true, cause: err });
}

/** Bodies up to this size are read to the end, so that the connection is reused. */
const DRAIN_MAX_BYTES = 64 * 1024;

/**
 * Reads a response body to its end (undici reuses a keep-alive connection only then; an
 * unread body holds it until garbage collection, so every call opened a new one). A body
 * larger than DRAIN_MAX_BYTES is cancelled instead: that connection is not worth it.
 */
async function drain(res: Response): Promise<void> {
  if (!res.body) return;
  const reader = res.body.getReader();
  let bytes = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      bytes += value.byteLength;
      if (bytes > DRAIN_MAX_BYTES) {
        await reader.cancel();
        return;
      }
    }
  } catch {
    // The delivery succeeded; a body cut short only costs the connection.
  } finally {
    reader.releaseLock();
  }
}

/**
 * fetch + {@link checkResponse}; network errors (refused, reset, DNS, timeout) are
 * retriable, an abort by the worker is not retried here (the worker is stopping).
 */
export async function send(fetchImpl: typeof fetch, url: string, init: RequestInit, now: number, what: string): Promise<void> {
  let res: Response;
  try {
    res = await fetchImpl(url, init);
  } catch (err) {
    throw unreachable(err, what);
  }
  await checkResponse(res, now, what);
}
