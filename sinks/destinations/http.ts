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
  if (res.ok) return;
  const body = (await res.text().catch(() => '')).slice(0, EXCERPT);
  const retriable = res.status === 408 || res.status === 429 || res.status >= 500;
  throw new DeliveryError(`${what} answered ${res.status}`, {
    retriable,
    httpStatus: res.status,
    retryAfterMs: parseRetryAfter(res.headers.get('retry-after'), now),
    bodyExcerpt: body,
  });
}

/**
 * fetch + {@link checkResponse}; network errors (refused, reset, DNS, timeout) are
 * retriable, an abort by the worker is not retried here (the worker is stopping).
 */
export async function send(fetchImpl: typeof fetch, url: string, init: RequestInit, now: number, what: string): Promise<Response> {
  let res: Response;
  try {
    res = await fetchImpl(url, init);
  } catch (err) {
    if (err instanceof DeliveryError) throw err;
    throw new DeliveryError(`${what} unreachable: ${(err as Error).message}`, { retriable: true, cause: err });
  }
  await checkResponse(res, now, what);
  return res;
}
