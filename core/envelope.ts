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

/**
 * Every instant in an envelope lies in the years 0001 to 9999 (UTC), to the millisecond.
 * That is what `Date#toISOString` writes with a four-digit year (the ISO-8601 form the
 * envelope requires: an expanded year such as `+010000` is not one), and what the
 * warehouse takes: Postgres refuses year 0000, BigQuery's TIMESTAMP spans the same years.
 */
export const TIMESTAMP_RANGE = {
  min: Date.parse('0001-01-01T00:00:00.000Z'),
  max: Date.parse('9999-12-31T23:59:59.999Z'),
  text: '0001-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z',
} as const;

/** An offset at the end of an ISO-8601 date-time; without one, the time is read as UTC. */
const HAS_OFFSET = /(?:Z|[+-]\d\d:\d\d)$/i;

function inTimestampRange(ms: number): boolean {
  return ms >= TIMESTAMP_RANGE.min && ms <= TIMESTAMP_RANGE.max;
}

/**
 * Whether an ISO-8601 date-time that passed zod's pattern (a valid date, a four-digit year)
 * lies within TIMESTAMP_RANGE; without an offset it is read as UTC. Only year 0000 and the
 * range's first and last days can fall outside (an offset moves an instant by less than a
 * day), so only those pay for a Date.parse: the router checks four timestamps an event.
 */
function isoInRange(iso: string): boolean {
  if (iso.startsWith('0000-12-31') || iso.startsWith('0001-01-01') || iso.startsWith('9999-12-31')) {
    return inTimestampRange(Date.parse(HAS_OFFSET.test(iso) ? iso : `${iso}Z`));
  }
  return !iso.startsWith('0000');
}

/** The envelope form of an instant (ISO-8601, UTC, milliseconds); undefined outside the range. */
export function envelopeTimestamp(ms: number): string | undefined {
  return inTimestampRange(ms) ? new Date(ms).toISOString() : undefined;
}

const ENVELOPE_DATETIME = z.regexes.datetime({ offset: true, local: false, precision: null });

/**
 * An envelope timestamp: ISO-8601 with Z or an offset (zod's own pattern), within
 * TIMESTAMP_RANGE. Ingest writes only `envelopeTimestamp` output, which always passes; the
 * range check keeps the rule one rule for any other writer (a transform, a replay). One
 * check rather than z.iso.datetime plus a refine: a second check per field cost the
 * router's decode twice as much (0.2 µs an envelope against 0.09 µs, best of 7 × 200,000).
 */
const isoDate = z.string().refine((s) => ENVELOPE_DATETIME.test(s) && isoInRange(s), {
  message: `an ISO-8601 date-time with Z or an offset, within ${TIMESTAMP_RANGE.text}`,
});

/** A year of TIMESTAMP_RANGE, four digits, not 0000. */
const YEAR = '(?:[1-9]\\d{3}|0[1-9]\\d{2}|00[1-9]\\d|000[1-9])';
/** Leap days: years divisible by 4 but not by 100, or by 400 (0000 left out). */
const LEAP_DAY = '(?:\\d\\d[2468][048]|\\d\\d[13579][26]|\\d\\d0[48]|(?:0[48]|[2468][048]|[13579][26])00)-02-29';
const DAY = `(?:${LEAP_DAY}|${YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|02-(?:0[1-9]|1\\d|2[0-8])))`;
const HOUR_MINUTE = '(?:[01]\\d|2[0-3]):[0-5]\\d';
/** With Z or an offset, seconds are required (as zod's ISO date-time has it); without, they are optional. */
const TIME = `T(?:${HOUR_MINUTE}:[0-5]\\d(?:\\.\\d+)?(?:Z|[+-]${HOUR_MINUTE})|${HOUR_MINUTE}(?::[0-5]\\d(?:\\.\\d+)?)?)`;
/**
 * Only the range's first and last day can leave it, through an offset (an offset moves an
 * instant by less than a day): 0001-01-01 takes no positive offset but +00:00, 9999-12-31
 * no negative one but -00:00. Stricter than the instant by a few hours at the ends of the
 * range, and so one rule that a JSON Schema `pattern` states whole (see ingest/openapi.ts).
 */
const EDGE = '(?!0001-01-01T[^+]*\\+(?!00:00$)|9999-12-31T[^-]*-(?!00:00$))';

/**
 * An ISO-8601 date-time as clients may send it: a four-digit year from 0001, with Z, an
 * offset or none, every match within TIMESTAMP_RANGE. Exported for the OpenAPI document.
 */
export const CLIENT_DATETIME = new RegExp(`^${EDGE}${DAY}${TIME}$`);

/**
 * A timestamp as clients send it (`timestamp`, `originalTimestamp`, `sentAt`): an ISO-8601
 * date-time with a four-digit year, with Z, an offset, or none (read as UTC, not in the
 * server's zone), or epoch milliseconds; within TIMESTAMP_RANGE either way. An empty string
 * counts as absent, as it does for the ids. Anything else (free text, expanded years,
 * `Date.parse` leniencies such as "1" for 2001) is refused rather than guessed at. One
 * pattern, no refinement: the JSON Schema of the ingest API says exactly what is taken.
 */
export const ClientTimestamp = z.union([
  z
    .string()
    .regex(CLIENT_DATETIME)
    .describe(`ISO-8601 date-time (a four-digit year; seconds required with Z or an offset); without an offset it is UTC; within ${TIMESTAMP_RANGE.text}, so no positive offset on 0001-01-01 and no negative one on 9999-12-31`),
  z.number().min(TIMESTAMP_RANGE.min).max(TIMESTAMP_RANGE.max).describe('epoch milliseconds'),
  z.literal('').describe('absent'),
]);
export type ClientTimestamp = z.infer<typeof ClientTimestamp>;

/** Epoch ms of a timestamp that passed ClientTimestamp; undefined when absent. */
export function clientTimestampMs(value: ClientTimestamp | null | undefined): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'number') return value;
  return Date.parse(HAS_OFFSET.test(value) ? value : `${value}Z`);
}

/**
 * How deep a JSON field of a message may nest (its own object or array is the first level).
 * Real analytics payloads stay under ten; 64 keeps every recursive reader (JSON.stringify,
 * flatteners, filters) far from its stack limit, and the envelope (one level more) within
 * the 128 levels serde_json and other strict parsers take by default. Beyond that is a 400.
 */
export const MAX_JSON_DEPTH = 64;

/** True when `value` nests more than `max` levels of objects and arrays. Recurses at most `max + 1` deep. */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (max <= 0) return true;
  if (Array.isArray(value)) {
    for (const v of value) if (nestsDeeperThan(v, max - 1)) return true;
    return false;
  }
  for (const k in value) if (nestsDeeperThan((value as Record<string, unknown>)[k], max - 1)) return true;
  return false;
}
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
