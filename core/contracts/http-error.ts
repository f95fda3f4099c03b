import type { Context } from 'hono';
import { OrreryError } from '../errors.ts';

/**
 * The one error body of every HTTP surface (ingest, GitOps, Pilot):
 * `{ success: false, code, message, details? }`.
 * - `code` is snake_case, lowercase: what a client branches on (`rate_limited`,
 *   `payload_too_large`, `spool_full`, …), the same on every surface.
 * - `details` (optional) holds the machine-readable rest (`index` of a batch item,
 *   `issues` of a body, …), always nested, never spread beside `code`.
 * - The status is the error's own, except where one code means one status everywhere
 *   (STATUS_BY_CODE).
 * - A 429 or 503 says when to come back: `Retry-After` (seconds), from the error's
 *   `details.retryAfterMs`, which is not repeated in the body.
 * Anything that is not an OrreryError is a bug: 500, `internal`, and nothing of it in the
 * body (the caller logs it).
 */
export interface ErrorBody {
  success: false;
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/** Codes whose status is the same on every surface, whoever raised them. */
export const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  // As Segment's API answers, not HTTP's 413: analytics-node retries every status except 400,
  // so a 413 would make it resend a batch that can never fit (README, Ingest).
  payload_too_large: 400,
};

/** The body and status for `err`; `internal` (500) for anything that is not an OrreryError. */
export function errorBody(err: unknown): { status: number; body: ErrorBody; retryAfterS?: number } {
  if (!(err instanceof OrreryError)) return { status: 500, body: { success: false, code: 'internal', message: 'internal error' } };
  const code = err.code.toLowerCase();
  const { retryAfterMs, ...details } = err.details ?? {};
  const status = STATUS_BY_CODE[code] ?? err.status;
  const body: ErrorBody = { success: false, code, message: err.message, ...(Object.keys(details).length > 0 ? { details } : {}) };
  const retryAfterS = status === 429 || status === 503 ? Math.max(1, Math.ceil(Number(retryAfterMs ?? 1000) / 1000)) : undefined;
  return { status, body, ...(retryAfterS !== undefined ? { retryAfterS } : {}) };
}

/**
 * Answers `err` with the error body. For a 429, `X-RateLimit-Reset` too (the same seconds),
 * as ingest has always sent.
 *
 * @example app.onError((err, c) => { if (!(err instanceof OrreryError)) log(err); return errorResponse(c, err); });
 */
export function errorResponse(c: Context, err: unknown): Response {
  const { status, body, retryAfterS } = errorBody(err);
  const headers: Record<string, string> = {};
  if (retryAfterS !== undefined) {
    headers['Retry-After'] = String(retryAfterS);
    if (status === 429) headers['X-RateLimit-Reset'] = String(retryAfterS);
  }
  return c.json(body, status as 400, headers);
}
