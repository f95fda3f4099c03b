import { z } from 'zod';
import { requireHeader as requireHeaderIn, safeEqual } from '../../core/auth.ts';
import { InputError } from '../../core/errors.ts';
import type { ImagePush, ReceiverRequest, ReceiverResult } from '../api/types.ts';
import { validateReference } from './reference.ts';

/**
 * What every receiver does the same way: the body limit, constant-time secret checks
 * (core/auth.ts, shared with Pilot and the git webhook),
 * JSON and shape parsing with our refusal codes, and validated pushes.
 */


/** Largest body a receiver looks at. Registry payloads are a few KiB; the HTTP layer limits too. */
export const MAX_BODY_BYTES = 1024 * 1024;

/** A shared secret we generate and configure on both sides: long enough not to be guessed. */
export const secretString = z.string().min(16, 'at least 16 characters');

/** 400 `payload_too_large` past {@link MAX_BODY_BYTES}; run before verifying, so no HMAC runs over a huge body. */
export function checkSize(body: string): void {
  const bytes = Buffer.byteLength(body, 'utf8');
  if (bytes > MAX_BODY_BYTES) {
    throw new InputError('payload_too_large', `the body is ${bytes} bytes; the limit is ${MAX_BODY_BYTES}`, 400, { bytes, limit: MAX_BODY_BYTES });
  }
}

/** A header's value (names are lower case in ReceiverRequest), or a 401 `missing_signature`. */
export function requireHeader(req: ReceiverRequest, name: string): string {
  return requireHeaderIn(req.headers, name);
}

/** The `Authorization` header must be exactly `expected` (401 `missing_signature` / `bad_token`). */
export function verifyAuthorization(req: ReceiverRequest, expected: string): void {
  const got = requireHeader(req, 'authorization');
  if (!safeEqual(got, expected)) throw new InputError('bad_token', 'the Authorization header does not match the configured token', 401);
}

/** The secret path segment must be exactly `expected` (401 `missing_signature` / `bad_token`). */
export function verifyPathSecret(req: ReceiverRequest, expected: string): void {
  if (req.pathSecret === undefined || req.pathSecret === '') throw new InputError('missing_signature', 'the webhook URL has no secret path segment', 401);
  if (!safeEqual(req.pathSecret, expected)) throw new InputError('bad_token', 'the secret path segment does not match', 401);
}

/** Parses the body as a JSON object; anything else is a 400 `invalid_payload`. */
export function parseJsonObject(body: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (err) {
    throw new InputError('invalid_payload', `the body is not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new InputError('invalid_payload', 'the body must be a JSON object');
  return value as Record<string, unknown>;
}

/** Checks a parsed payload against the provider's shape; a mismatch is a 400 `invalid_payload` naming the field. */
export function parseShape<T>(schema: z.ZodType<T>, value: unknown): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = issue.path.join('.');
  throw new InputError('invalid_payload', `${field || 'body'}: ${issue.message}`, 400, { field });
}

/** A validated push (400 `invalid_reference` otherwise), without undefined fields. */
export function imagePush(repository: string, tag: string, digest?: string, pushedAt?: number): ImagePush {
  validateReference({ repository, tag, digest });
  return { repository, tag, ...(digest === undefined ? {} : { digest }), ...(pushedAt === undefined ? {} : { pushedAt }) };
}

/** `pushes`, or `ignored` with `reason` when nothing was pushed. */
export function pushesOrIgnored(pushes: ImagePush[], reason: string, deliveryId?: string): ReceiverResult {
  if (pushes.length === 0) return ignored(reason, deliveryId);
  return deliveryId === undefined ? { kind: 'pushes', pushes } : { kind: 'pushes', pushes, deliveryId };
}

/** A verified delivery with nothing to do. */
export function ignored(reason: string, deliveryId?: string): ReceiverResult {
  return deliveryId === undefined ? { kind: 'ignored', reason } : { kind: 'ignored', reason, deliveryId };
}

/** Unix seconds (possibly fractional) to ms since epoch; undefined unless positive. */
export function fromUnixSeconds(seconds: number | undefined): number | undefined {
  return seconds !== undefined && Number.isFinite(seconds) && seconds > 0 ? Math.round(seconds * 1000) : undefined;
}

/** An RFC 3339 time to ms since epoch; undefined when absent, unparseable, or Go's zero time (year 1). */
export function fromIsoTime(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = Date.parse(text);
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}
