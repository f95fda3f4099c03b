import type { z } from 'zod';
import type { DestinationConfig } from '../../core/control-plane.ts';
import type { Envelope } from '../../core/envelope.ts';
import { OrreryError } from '../../core/errors.ts';

/**
 * A destination: one module per folder under sinks/destinations/<type>/, registered in
 * sinks/destinations/index.ts. The worker framework owns consuming, batching, retries,
 * the circuit breaker and dead letters; a destination only turns a batch of events into
 * its vendor's request and says how that went.
 */
export interface DestinationModule<C = unknown> {
  /** The `type` users write in a destination's config, e.g. `webhook`. */
  type: string;
  /** The vendor's name, as Segment's `integrations` object spells it. */
  displayName: string;
  /** Validates the destination's own settings (the fields beside id/type/name/enabled). */
  configSchema: z.ZodType<C>;
  /** Most events one `deliver` call takes (the vendor's documented batch limit). */
  maxBatchSize: number;
  /**
   * Events per call for these settings, when they decide it (a webhook posts one event per
   * request unless `batch: true`). A destination that takes one event per call is delivered
   * per user, several users at once, instead of in cross-user chunks.
   */
  batchSize?(config: C): number;
  /**
   * Sends the events, in order. Resolves when the vendor accepted all of them; throws a
   * {@link DeliveryError} otherwise. Must not retry by itself: the worker does.
   */
  deliver(events: Envelope[], config: C, ctx: DeliveryContext): Promise<void>;
}

export interface DeliveryContext {
  /** The fetch to use (the worker's, with its timeout and SSRF guard where it applies). */
  fetch: typeof fetch;
  now(): number;
  /** Aborted when the worker stops or the attempt times out. */
  signal: AbortSignal;
}

/**
 * Why a delivery failed, in the worker's terms: whether another attempt can help, the
 * HTTP status and an excerpt of the response (kept on the dead letter), and how long the
 * vendor asked us to wait (Retry-After).
 */
export class DeliveryError extends OrreryError {
  readonly httpStatus: number | undefined;
  readonly retryAfterMs: number | undefined;
  readonly bodyExcerpt: string | undefined;

  constructor(
    message: string,
    opts: { retriable: boolean; httpStatus?: number; retryAfterMs?: number; bodyExcerpt?: string; cause?: unknown },
  ) {
    super(opts.retriable ? 'DELIVERY_RETRIABLE' : 'DELIVERY_REJECTED', message, { retriable: opts.retriable, cause: opts.cause });
    this.name = 'DeliveryError';
    this.httpStatus = opts.httpStatus;
    this.retryAfterMs = opts.retryAfterMs;
    this.bodyExcerpt = opts.bodyExcerpt;
  }
}

/**
 * A destination's own settings, which its type's `configSchema` checks: the fields beside
 * id, type, name and enabled (the control plane's). Strict settings schemas (Amplitude,
 * Mixpanel, GA4, Slack) would refuse those four as unknown keys.
 *
 * @example destinationSettings({ id: 'amp', type: 'amplitude', enabled: true, apiKey: 'k' }); // { apiKey: 'k' }
 */
export function destinationSettings(d: DestinationConfig): Record<string, unknown> {
  const { id: _id, type: _type, name: _name, enabled: _enabled, ...settings } = d;
  return settings;
}

const PORT = '(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?';
/** A DNS name whose last label starts with a letter: never read as an IPv4 address. */
const HOST_NAME = '(?:[A-Za-z0-9-]+\\.)*[A-Za-z][A-Za-z0-9-]*';

/**
 * A JSON Schema `pattern` for a settings URL, for the OpenAPI document: zod's JSON Schema of
 * `z.url()` says only `format: uri`, which takes "http://" and any scheme. It states a
 * subset of what the URL parser takes (no whitespace or control characters, a port in
 * range), so a URL that matches it is never refused as "Invalid URL".
 *
 * @example z.url({ protocol: /^https?$/ }).meta({ pattern: urlPattern('https?') })
 */
export function urlPattern(scheme: string, host = HOST_NAME): string {
  return `^${scheme}://(?:[^\\x00-\\x20/?#@\\\\]+@)?${host}${PORT}(?:[/?#][^\\x00-\\x20]*)?$`;
}
