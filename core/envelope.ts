import { z } from 'zod';

/**
 * The event envelope: the value of every message on every Orrery topic, and the single
 * source of truth for its shape. It is the Segment message as received and enriched,
 * flattened, plus Orrery's own fields: the envelope version `v`, the `sourceId` (never the
 * write key) and, once routed, the config version that routed it.
 *
 * Types are inferred from the schemas below; nothing restates them by hand.
 */

export const ENVELOPE_VERSION = 1;

export const CALL_TYPES = ['track', 'identify', 'page', 'screen', 'group', 'alias'] as const;
export const CallType = z.enum(CALL_TYPES);
export type CallType = z.infer<typeof CallType>;

/** Segment caps messageId at 100 characters. */
export const MESSAGE_ID_MAX = 100;

const isoDate = z.iso.datetime({ offset: true, local: false });
/**
 * A JSON object with any fields. A loose object with no known keys rather than
 * `z.record(z.string(), z.unknown())`: the same rule and JSON Schema, but the record ran
 * two schemas per key, which was more than half of the envelope's validation.
 */
export const jsonObject = z.looseObject({});

/**
 * Segment's common fields plus the per-call ones, all optional here: which fields a call
 * type requires is checked by the ingest validators, which report Segment's own codes.
 * Unknown top-level fields are kept (`loose`), as Segment keeps them.
 */
const SEGMENT_FIELDS = {
  type: CallType,
  messageId: z.string().min(1).max(MESSAGE_ID_MAX),
  userId: z.string().min(1).optional(),
  anonymousId: z.string().min(1).optional(),
  event: z.string().optional(),
  name: z.string().optional(),
  category: z.string().optional(),
  groupId: z.string().optional(),
  previousId: z.string().optional(),
  properties: jsonObject.optional(),
  traits: jsonObject.optional(),
  context: jsonObject.optional(),
  integrations: jsonObject.optional(),
  timestamp: isoDate,
  originalTimestamp: isoDate.optional(),
  sentAt: isoDate.optional(),
  receivedAt: isoDate,
};

const hasUserOrAnon: [(m: { userId?: string | undefined; anonymousId?: string | undefined }) => boolean, { message: string; path: string[] }] = [
  (m) => m.userId !== undefined || m.anonymousId !== undefined,
  { message: 'userId or anonymousId is required', path: ['userId'] },
];

export const SegmentMessage = z.looseObject(SEGMENT_FIELDS).refine(...hasUserOrAnon);
export type SegmentMessage = z.infer<typeof SegmentMessage>;

export const Routing = z.object({
  /** Version of the control-plane config that routed the event. */
  configVersion: z.number().int().nonnegative(),
  destinationId: z.string(),
  routedAt: isoDate,
});
export type Routing = z.infer<typeof Routing>;

/**
 * One loose object with every field rather than an intersection of the Segment message and
 * Orrery's fields: the same rules, but zod parses an intersection twice and merges the
 * results, which made decoding the largest part of the router's own CPU.
 */
export const Envelope = z
  .looseObject({
    ...SEGMENT_FIELDS,
    v: z.literal(ENVELOPE_VERSION),
    sourceId: z.string().min(1),
    routing: Routing.optional(),
  })
  .refine(...hasUserOrAnon);
export type Envelope = z.infer<typeof Envelope>;

/**
 * The partition key: `sourceId:` then the userId, or the anonymousId when there is none.
 * One user's events share a key, so their order holds end to end.
 */
export function eventKey(sourceId: string, msg: { userId?: string | undefined; anonymousId?: string | undefined }): string {
  return `${sourceId}:${msg.userId ?? msg.anonymousId ?? ''}`;
}

/**
 * Serialises an envelope for the bus. One serialisation per event: callers keep the
 * result. A string, not a Buffer, so that runtime-agnostic code (the ingest app) can use it.
 */
export function encodeEnvelope(env: Envelope): string {
  return JSON.stringify(env);
}

export type DecodeResult = { ok: true; envelope: Envelope } | { ok: false; reason: 'invalid_json' | 'invalid_envelope'; error: string };

const utf8 = new TextDecoder();

/** Parses and validates a bus message value. Never throws: poison messages are data. */
export function decodeEnvelope(value: Uint8Array | string | null): DecodeResult {
  if (value === null) return { ok: false, reason: 'invalid_json', error: 'empty message value' };
  let raw: unknown;
  try {
    raw = JSON.parse(typeof value === 'string' ? value : utf8.decode(value));
  } catch (err) {
    return { ok: false, reason: 'invalid_json', error: (err as Error).message };
  }
  const parsed = Envelope.safeParse(raw);
  if (!parsed.success) return { ok: false, reason: 'invalid_envelope', error: z.prettifyError(parsed.error) };
  return { ok: true, envelope: parsed.data };
}
