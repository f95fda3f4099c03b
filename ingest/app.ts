import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { TakeResult, TokenBucket } from '../core/cache/types.ts';
import { encodeEnvelope, type CallType } from '../core/envelope.ts';
import { errorResponse as sharedErrorResponse } from '../core/contracts/http-error.ts';
import { InputError, OrreryError } from '../core/errors.ts';
import { enrich } from './enrich.ts';
import { contentCoding, inflate } from './inflate.ts';
import { buildOpenApi } from './openapi.ts';
import type { Source, SourceResolver } from './sources.ts';
import { LIMITS, parseJson, validateBatch, validateMessage, type ValidBatch, type ValidMessage } from './validate.ts';

/** Throws on bytes that are not UTF-8, where the default decoder would put U+FFFD. */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The ingest app: Segment's HTTP Tracking API on Hono. A pure factory: it never listens
 * and imports nothing Node-only, so the same app serves on Node (@hono/node-server) and
 * as a plain `fetch` handler on serverless and edge runtimes. Everything with a side
 * effect (the hand-off to Kafka, the limiter, metrics, the client address) comes in
 * through `deps`.
 */

export interface IngestRecord {
  key: string;
  value: string;
}

export interface IngestMetrics {
  accepted(sourceId: string, events: number): void;
  /** A refused request, by error code. */
  rejected(code: string, requests: number): void;
  handedOff(via: string, ms: number): void;
}

export interface IngestDeps {
  sources: SourceResolver;
  /** Resolves once the records are durable; ingest answers 2xx only after that. */
  handoff: { send(records: IngestRecord[]): Promise<unknown> };
  limiter?: { take(key: string, bucket: TokenBucket, cost?: number): Promise<TakeResult> };
  /** Applies to sources without their own rate limit; none when absent. */
  defaultRateLimit?: TokenBucket;
  metrics?: IngestMetrics;
  /** The client's address (connection, or trusted proxy headers). */
  clientIp?: (c: Context) => string | undefined;
  now?: () => number;
  newId?: () => string;
  /** An error no handler expected (answered 500 `internal`): log and count it (core/error-boundary.ts). */
  onUnexpectedError?: (err: unknown, c: Context<any>) => void;
}

/** Single-call paths, long and analytics.js short forms. */
const SINGLE: ReadonlyArray<[string, CallType]> = [
  ['track', 'track'],
  ['t', 'track'],
  ['identify', 'identify'],
  ['i', 'identify'],
  ['page', 'page'],
  ['p', 'page'],
  ['screen', 'screen'],
  ['s', 'screen'],
  ['group', 'group'],
  ['g', 'group'],
  ['alias', 'alias'],
  ['a', 'alias'],
];
const BATCH_PATHS = ['batch', 'import', 'b'];

/** A transparent 1×1 GIF, the pixel's answer. */
const PIXEL_GIF = Uint8Array.from(atob('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7'), (ch) => ch.charCodeAt(0));

const NOOP_METRICS: IngestMetrics = { accepted() {}, rejected() {}, handedOff() {} };

type Env = { Variables: { corsDenied: boolean } };

/**
 * @example
 *   const app = createIngestApp({ sources, handoff });
 *   const res = await app.request('/v1/track', { method: 'POST', headers: { authorization: `Basic ${btoa(key + ':')}` }, body });
 */
export function createIngestApp(deps: IngestDeps): Hono<Env> {
  const metrics = deps.metrics ?? NOOP_METRICS;
  const now = deps.now ?? Date.now;
  const newId = deps.newId ?? (() => crypto.randomUUID());
  // Not strict: a trailing slash names the same path (Segment's Java library posts to `/v1/import/`).
  const app = new Hono<Env>({ strict: false });

  app.onError(function ingestError(err, c) {
    return errorResponse(c, err);
  });
  app.notFound((c) => c.json({ success: false, code: 'not_found', message: `no route for ${c.req.method} ${c.req.path}` }, 404));

  function errorResponse(c: Context<Env>, err: unknown): Response {
    if (err instanceof OrreryError) metrics.rejected(err.code, 1);
    else {
      deps.onUnexpectedError?.(err, c);
      metrics.rejected('internal', 1);
    }
    return sharedErrorResponse(c, err);
  }

  // CORS: browsers (analytics.js) send text/plain to avoid a preflight, but other clients
  // preflight. The preflight cannot name its source (no body, no credentials), so it is
  // answered for any origin; the request itself is checked against the source's list.
  app.use('/v1/*', async function cors(c, next) {
    const origin = c.req.header('origin');
    if (c.req.method === 'OPTIONS') {
      return new Response(null, {
        status: 204,
        headers: {
          'Access-Control-Allow-Origin': origin ?? '*',
          'Access-Control-Allow-Methods': 'POST, GET, OPTIONS',
          'Access-Control-Allow-Headers': c.req.header('access-control-request-headers') ?? 'Content-Type, Authorization',
          'Access-Control-Max-Age': '86400',
          // navigator.sendBeacon always sends credentials: without this, Chromium refuses
          // the preflight of a beacon with a JSON Blob and never sends it.
          ...(origin ? { 'Access-Control-Allow-Credentials': 'true' } : {}),
          Vary: 'Origin',
        },
      });
    }
    await next();
    if (origin && !c.get('corsDenied')) {
      c.res.headers.set('Access-Control-Allow-Origin', origin);
      c.res.headers.set('Access-Control-Allow-Credentials', 'true');
      // Not safelisted for CORS: without this a page cannot read when to retry a 429 or
      // 503, and analytics.js, which honours Retry-After, retried at once (three 429s).
      c.res.headers.set('Access-Control-Expose-Headers', 'Retry-After, X-RateLimit-Reset');
      c.res.headers.append('Vary', 'Origin');
    }
  });

  const payloadTooLarge = (max: number) => new InputError('payload_too_large', `the request body is larger than ${max} bytes`);

  /**
   * The body size limit. A request that declares its Content-Length (every SDK does) is
   * judged by it before anything is read, and the body is then read on the server's fast
   * path: hono's bodyLimit wraps every body in a new web stream and Request, which was the
   * largest single cost of a small /v1/track in the ingest-track profile. A chunked body
   * (no Content-Length) still goes through bodyLimit, which counts the bytes as they come.
   * The runtime holds a body to its declared length; readBody checks it again anyway.
   */
  const tooLarge = (max: number): MiddlewareHandler<Env> => {
    const streaming = bodyLimit({ maxSize: max, onError: (c) => errorResponse(c as Context<Env>, payloadTooLarge(max)) });
    return async function limit(c, next) {
      const declared = c.req.header('content-length');
      if (declared === undefined) return streaming(c, next);
      const bytes = Number(declared);
      if (!Number.isSafeInteger(bytes) || bytes < 0) throw new InputError('invalid_content_length', 'the Content-Length header is not a byte count');
      if (bytes > max) throw payloadTooLarge(max);
      await next();
    };
  };

  /**
   * The body as text, inflated first when it has a Content-Encoding (ingest/inflate.ts:
   * the limit applies to the inflated bytes too), refused when longer than `max` bytes or
   * not valid UTF-8: decoding
   * with replacement would pass U+FFFD on in place of what the client meant, unnoticed
   * (every SDK sends UTF-8, as JSON must be).
   */
  async function readBody(c: Context<Env>, max: number): Promise<string> {
    const coding = contentCoding(c.req.header('content-encoding'));
    // The compressed body is read in full first (it is held to `max` too): refusing a bomb
    // with its body half read would reset the connection under a client still sending.
    const raw = await c.req.arrayBuffer();
    const bytes = coding ? await inflate(new Response(raw).body, coding, max) : raw;
    if (bytes.byteLength > max) throw payloadTooLarge(max);
    try {
      return strictUtf8.decode(bytes);
    } catch {
      throw new InputError('invalid_encoding', 'the request body is not valid UTF-8');
    }
  }

  async function authenticate(c: Context<Env>, bodyKey: unknown): Promise<Source> {
    const key = writeKeyFromHeader(c.req.header('authorization')) ?? (typeof bodyKey === 'string' && bodyKey ? bodyKey : undefined);
    if (!key) throw new InputError('missing_write_key', 'send the write key as the Basic auth username, or as writeKey in the body', 401);
    const source = await deps.sources.byWriteKey(key);
    if (!source) throw new InputError('invalid_write_key', 'the write key matches no source', 401);
    if (!source.enabled) throw new InputError('source_disabled', 'the source of this write key is disabled', 401);
    const origin = c.req.header('origin');
    if (origin && !source.allowedOrigins.includes('*') && !source.allowedOrigins.includes(origin)) {
      c.set('corsDenied', true);
      throw new InputError('origin_not_allowed', `origin ${origin} may not send to this source`, 403);
    }
    return source;
  }

  async function accept(c: Context<Env>, source: Source, valid: ValidMessage[], batch?: ValidBatch): Promise<Response> {
    const bucket = source.rateLimit ?? deps.defaultRateLimit;
    if (bucket && deps.limiter) {
      const taken = await deps.limiter.take(`ratelimit:${source.id}`, bucket, valid.length);
      if (!taken.allowed) {
        throw new OrreryError('rate_limited', `source ${source.id} is over its rate limit`, {
          status: 429,
          retriable: true,
          details: { retryAfterMs: taken.retryAfterMs },
        });
      }
    }
    const receivedAt = now();
    const ip = deps.clientIp?.(c);
    const records: IngestRecord[] = new Array(valid.length);
    for (let i = 0; i < valid.length; i++) {
      const { key, envelope } = enrich(valid[i]!, {
        sourceId: source.id,
        receivedAt,
        ip,
        batchContext: batch?.batch.context,
        batchIntegrations: batch?.batch.integrations,
        batchSentAt: batch?.sentAt,
        newId,
      });
      // One serialisation per event; its length also enforces the per-event limit. The
      // envelope adds a few hundred bytes to what the client sent, hence the slack.
      const value = encodeEnvelope(envelope);
      if (value.length > LIMITS.maxEventBytes + 1024) {
        throw new InputError('event_too_large', `an event may be at most ${LIMITS.maxEventBytes} bytes`, 400, batch ? { index: i } : {});
      }
      records[i] = { key, value };
    }
    const started = now();
    const via = await deps.handoff.send(records);
    metrics.handedOff(String(via ?? 'bus'), now() - started);
    metrics.accepted(source.id, records.length);
    return c.json({ success: true });
  }

  for (const [path, type] of SINGLE) {
    app.post(`/v1/${path}`, tooLarge(LIMITS.maxEventBytes), async function single(c) {
      const body = parseJson(await readBody(c, LIMITS.maxEventBytes));
      const source = await authenticate(c, (body as { writeKey?: unknown } | null)?.writeKey);
      return accept(c, source, [validateMessage(body, { type })]);
    });
  }

  for (const path of BATCH_PATHS) {
    app.post(`/v1/${path}`, tooLarge(LIMITS.maxBatchBytes), async function batch(c) {
      const body = parseJson(await readBody(c, LIMITS.maxBatchBytes));
      const parsed = validateBatch(body);
      const source = await authenticate(c, parsed.batch.writeKey);
      const items = parsed.batch.batch;
      if (items.length === 0) throw new InputError('empty_batch', 'the batch holds no messages');
      if (items.length > LIMITS.maxBatchEvents) {
        throw new InputError('too_many_events', `a batch may hold at most ${LIMITS.maxBatchEvents} messages`, 400, { count: items.length });
      }
      // The whole batch is refused when any item is invalid, so a 2xx always means every
      // event was taken; the error names the first offending index.
      const valid = items.map((item, index) => validateMessage(item, { index }));
      return accept(c, source, valid, parsed);
    });
  }

  app.get('/v1/pixel/:type', async function pixel(c) {
    const type = SINGLE.find(([p]) => p === c.req.param('type'))?.[1];
    if (!type) throw new InputError('invalid_type', `unknown pixel type "${c.req.param('type')}"`, 400);
    const data = c.req.query('data');
    if (!data) throw new InputError('missing_data', 'the pixel needs ?data=<base64 JSON>');
    if (data.length > ((LIMITS.maxEventBytes + 2) / 3) * 4 + 4) throw new InputError('payload_too_large', 'the pixel data is too large');
    // A `+` of standard base64 arrives as a space when the page did not escape it
    // (`?data=${btoa(json)}`), and a space is never base64: it is read back as `+`.
    const body = parseJson(decodeBase64Utf8(data.replaceAll(' ', '+')));
    const source = await authenticate(c, (body as { writeKey?: unknown } | null)?.writeKey);
    await accept(c, source, [validateMessage(body, { type })]);
    return c.body(PIXEL_GIF, 200, { 'Content-Type': 'image/gif', 'Cache-Control': 'no-store, max-age=0' });
  });

  // analytics.js reports its own metrics here every 30 s (no write key): taken and dropped,
  // so that it is not a failed request on every page that uses it.
  app.post('/v1/m', tooLarge(LIMITS.maxEventBytes), async function sdkMetrics(c) {
    await readBody(c, LIMITS.maxEventBytes);
    return c.json({ success: true });
  });

  const openapi = buildOpenApi();
  app.get('/openapi.json', (c) => c.json(openapi));

  return app;
}

/** Basic auth with the write key as the username and an empty password. */
function writeKeyFromHeader(header: string | undefined): string | undefined {
  if (!header || !/^basic /i.test(header)) return undefined;
  let decoded: string;
  try {
    decoded = atob(header.slice(6).trim());
  } catch {
    throw new InputError('invalid_authorization', 'the Basic credentials are not valid base64', 401);
  }
  const key = decoded.split(':')[0];
  return key || undefined;
}

function decodeBase64Utf8(data: string): string {
  try {
    // Accept URL-safe base64 and missing padding: email templates produce both.
    const b64 = data.replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, '='));
    return strictUtf8.decode(Uint8Array.from(binary, (ch) => ch.charCodeAt(0)));
  } catch {
    throw new InputError('invalid_data', 'the pixel data is not valid base64 of UTF-8 text');
  }
}

/** Only machine-readable fields go back to the client (never a cause or a stack). */
