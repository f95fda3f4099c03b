import { ENVELOPE_VERSION, envelopeTimestamp, eventKey, type Envelope } from '../core/envelope.ts';
import type { ValidMessage } from './validate.ts';

export interface EnrichContext {
  sourceId: string;
  /** When the request arrived. */
  receivedAt: number;
  /** The client address, when known; never overrides one the client set. */
  ip: string | undefined;
  /** Batch-level fields, merged under each item's own. */
  batchContext?: Record<string, unknown> | null | undefined;
  batchIntegrations?: Record<string, unknown> | null | undefined;
  batchSentAt?: number | undefined;
  newId: () => string;
}

/**
 * Enriches a validated message into the envelope, as Segment does:
 * - a `messageId` when absent;
 * - `receivedAt`;
 * - `originalTimestamp` is the client's timestamp (or its `originalTimestamp` when it sent
 *   no timestamp), and when `sentAt` is known the timestamp is corrected for the device's
 *   clock skew: `timestamp = receivedAt − (sentAt − originalTimestamp)`;
 * - `context.ip` from the connection, unless the client set one;
 * - batch-level `context` and `integrations` merged under the item's own;
 * - the `sourceId`; the write key and any `routing` the client sent are dropped (only the
 *   router routes), and the ids and timestamps are the validated ones, never the client's
 *   raw values: an empty id is left out, every timestamp is written as ISO-8601 in UTC.
 * The result always passes the envelope schema. A skew correction that would leave
 * TIMESTAMP_RANGE (stamps millennia apart) is not made: the client's time is kept.
 * Pure: time, ids and the address come in through `ctx`.
 */
export function enrich(valid: ValidMessage, ctx: EnrichContext): { key: string; envelope: Envelope } {
  const { msg } = valid;
  const { writeKey: _key, routing: _routing, userId: _u, anonymousId: _a, timestamp: _t, originalTimestamp: _o, sentAt: _s, ...rest } = msg;
  const sentAt = valid.sentAt ?? ctx.batchSentAt;
  const original = valid.timestamp;
  // A correction that leaves TIMESTAMP_RANGE (stamps millennia apart) is no clock skew
  // but a bogus sentAt: the client's own time is kept rather than the event refused, as
  // every field of the request was valid on its own.
  const corrected = original === undefined || sentAt === undefined ? undefined : envelopeTimestamp(ctx.receivedAt - (sentAt - original));
  const timestamp = corrected ?? envelopeTimestamp(original ?? ctx.receivedAt)!;

  const context: Record<string, unknown> = { ...ctx.batchContext, ...msg.context };
  if (context.ip === undefined && ctx.ip !== undefined) context.ip = ctx.ip;
  const integrations = ctx.batchIntegrations || msg.integrations ? { ...ctx.batchIntegrations, ...msg.integrations } : undefined;

  const envelope = {
    ...stripNulls(rest),
    v: ENVELOPE_VERSION,
    sourceId: ctx.sourceId,
    type: valid.type,
    messageId: msg.messageId || ctx.newId(),
    ...(valid.userId !== undefined ? { userId: valid.userId } : {}),
    ...(valid.anonymousId !== undefined ? { anonymousId: valid.anonymousId } : {}),
    context,
    ...(integrations ? { integrations } : {}),
    timestamp,
    // Validated within TIMESTAMP_RANGE, so these are never undefined.
    ...(original !== undefined ? { originalTimestamp: envelopeTimestamp(original) } : {}),
    ...(sentAt !== undefined ? { sentAt: envelopeTimestamp(sentAt) } : {}),
    receivedAt: new Date(ctx.receivedAt).toISOString(),
  } as Envelope;
  return { key: eventKey(ctx.sourceId, envelope), envelope };
}

/** SDKs send explicit nulls for absent fields; the envelope leaves them out. */
function stripNulls(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k in o) if (o[k] !== null && o[k] !== undefined) out[k] = o[k];
  return out;
}
