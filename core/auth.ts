import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { InputError } from './errors.ts';
import type { Logger } from './logger.ts';

/**
 * How Orrery's HTTP endpoints check who is calling, in one place, so every surface compares
 * secrets the same (constant-time) way: the admin token (Bearer), GitHub-style
 * `X-Hub-Signature-256` HMACs, and Standard Webhooks signatures (the scheme Orrery's webhook
 * destination signs with and the generic registry receiver and Pilot's demo receiver verify).
 * None of it ever puts a secret in a message or a log.
 */

/**
 * Constant-time string comparison. Both sides are hashed first, so the comparison takes
 * the same time whatever the lengths: timingSafeEqual alone throws on unequal lengths,
 * and checking the length first would leak it.
 *
 * @example safeEqual(req.headers.authorization ?? '', `Bearer ${token}`)
 */
export function safeEqual(a: string | Buffer, b: string | Buffer): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/** A fresh admin token: 24 random bytes, base64url. */
export function newAdminToken(): string {
  return randomBytes(24).toString('base64url');
}

/** A fresh Standard Webhooks secret (`whsec_` and 24 random bytes in base64). */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

/** Whether `header` is `Bearer <token>` (any case for the scheme); constant-time on the token. */
export function isBearer(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m !== null && safeEqual(m[1]!, token);
}

/**
 * Hono middleware that wants `Authorization: Bearer <token>`: 401 `missing_token` without
 * one, 401 `invalid_token` with a wrong one, each with a `WWW-Authenticate` challenge.
 *
 * @example app.use('/api/*', bearerAuth(adminToken, 'orrery-pilot'));
 */
export function bearerAuth(token: string, realm = 'orrery'): MiddlewareHandler {
  return async function requireAdminToken(c, next) {
    const header = c.req.header('authorization');
    if (!/^Bearer\s+\S+\s*$/i.test(header ?? '')) {
      c.header('WWW-Authenticate', `Bearer realm="${realm}"`);
      throw new InputError('missing_token', 'send the admin token as Authorization: Bearer <token>', 401);
    }
    if (!isBearer(header, token)) {
      c.header('WWW-Authenticate', `Bearer realm="${realm}", error="invalid_token"`);
      throw new InputError('invalid_token', 'the admin token is not valid', 401);
    }
    await next();
  };
}

/** Header values by lower-case name. */
export type HeaderMap = Readonly<Record<string, string | undefined>>;

/** A header's value (names are lower case), or a 401 `missing_signature`. */
export function requireHeader(headers: HeaderMap, name: string): string {
  const value = headers[name];
  if (value === undefined || value === '') throw new InputError('missing_signature', `the ${name} header is missing`, 401, { header: name });
  return value;
}

/**
 * GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` (Gitea and
 * Forgejo send it too), keyed with the webhook's secret; 401 `missing_signature` or
 * `bad_signature` otherwise.
 */
export function verifyHubSignature(headers: HeaderMap, body: string, secret: string): void {
  const got = requireHeader(headers, 'x-hub-signature-256');
  const expected = `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
  if (!safeEqual(got, expected)) throw new InputError('bad_signature', 'X-Hub-Signature-256 does not match the body', 401);
}

/** The Standard Webhooks spec's default tolerance. */
export const TIMESTAMP_TOLERANCE_MS = 5 * 60 * 1000;

/**
 * The Standard Webhooks signature header value:
 * `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed with the base64 bytes after `whsec_`.
 */
export function signStandardWebhook(secret: string, id: string, timestamp: number | string, body: string): string {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`, 'utf8').digest('base64')}`;
}

/**
 * The three Standard Webhooks headers of a post of `body`, signed at `nowMs`.
 *
 * @example fetch(url, { method: 'POST', body, headers: { ...standardWebhookHeaders(secret, id, body, Date.now()) } });
 */
export function standardWebhookHeaders(secret: string, id: string, body: string, nowMs: number): Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string> {
  const timestamp = Math.floor(nowMs / 1000);
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signStandardWebhook(secret, id, timestamp, body) };
}

/**
 * Verifies a Standard Webhooks request (https://www.standardwebhooks.com/) against any of
 * `secrets`, and returns its `webhook-id`. The signature header may list several
 * space-separated signatures (during a secret rotation); one matching `v1` is enough, and
 * other versions (`v1a`, asymmetric) are skipped. Timestamps more than five minutes from
 * `now` are refused, as the spec's libraries do, so a captured request cannot be replayed
 * later. 401 `missing_signature`, `bad_signature` or `stale_timestamp` otherwise.
 *
 * @example const id = verifyStandardWebhook(headers, body, [settings.secret], Date.now());
 */
export function verifyStandardWebhook(headers: HeaderMap, body: string, secrets: readonly string[], now: number): string {
  const id = requireHeader(headers, 'webhook-id');
  const timestamp = requireHeader(headers, 'webhook-timestamp');
  const signatures = requireHeader(headers, 'webhook-signature');
  if (!/^[0-9]{1,12}$/.test(timestamp)) throw new InputError('bad_signature', 'webhook-timestamp is not Unix seconds', 401);
  if (Math.abs(now - Number(timestamp) * 1000) > TIMESTAMP_TOLERANCE_MS) {
    throw new InputError('stale_timestamp', 'webhook-timestamp is more than 5 minutes from now', 401, { timestamp: Number(timestamp) });
  }
  const offered = signatures.split(' ').filter((entry) => entry.startsWith('v1,'));
  const ok = secrets.some((secret) => {
    // The timestamp exactly as sent: it is what the sender signed.
    const expected = signStandardWebhook(secret, id, timestamp, body);
    return offered.some((entry) => safeEqual(entry, expected));
  });
  if (!ok) throw new InputError('bad_signature', 'no v1 signature in webhook-signature matches the body', 401);
  return id;
}

/**
 * The admin token of the process: the configured one (PILOT_ADMIN_TOKEN), or one generated
 * for this run and printed once on stderr, so a first run works without setup. The JSON
 * log holds no secrets: it only says that a token was generated.
 *
 * @example const adminToken = resolveAdminToken({ configured: pilotConfigFrom(process.env).adminToken, logger });
 */
export function resolveAdminToken(opts: { configured: string | undefined; logger: Logger; write?: (text: string) => void }): string {
  if (opts.configured) return opts.configured;
  const token = newAdminToken();
  const write = opts.write ?? ((text: string) => void process.stderr.write(text));
  write(
    `orrery: PILOT_ADMIN_TOKEN is not set: generated an admin token for this run: ${token}\n` +
      `  sign in to the UI with it, and send it as "Authorization: Bearer <token>" to /api, /deploys and /sync/status; it changes at every start (set PILOT_ADMIN_TOKEN to choose one)\n`,
  );
  opts.logger.child({ component: 'auth' }).info({ adminToken: 'generated' }, 'PILOT_ADMIN_TOKEN is not set: generated an admin token for this run (printed on stderr, not logged)');
  return token;
}
