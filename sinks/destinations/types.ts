import type { z } from 'zod';
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
