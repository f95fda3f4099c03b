import { z } from 'zod';
import { CALL_TYPES, clientTimestampMs, ClientTimestamp, jsonObject, MAX_JSON_DEPTH, MESSAGE_ID_MAX, nestsDeeperThan, TIMESTAMP_RANGE, type CallType } from '../core/envelope.ts';
import { InputError } from '../core/errors.ts';

/**
 * Request schemas for Segment's HTTP Tracking API, and the checks that give Segment's
 * error codes. Pure and runtime-agnostic (no Node imports): the ingest app runs on Node
 * and as a plain fetch handler.
 */

/** Segment's documented limits. Oversize answers 400, as Segment does (see README). */
export const LIMITS = {
  maxEventBytes: 32 * 1024,
  maxBatchBytes: 500 * 1024,
  maxBatchEvents: 2_500,
} as const;

const id = z
  .union([z.string(), z.number()])
  .transform((v) => String(v))
  .nullish();
const userOrAnon = id.describe('a string or number (sent on as a string); an empty string counts as absent, and a message needs userId or anonymousId');
const obj = jsonObject.nullish().describe(`a JSON object nesting at most ${MAX_JSON_DEPTH} levels of objects and arrays (every field of a message is held to that)`);
const stamp = ClientTimestamp.nullish();
/** The fields that hold a ClientTimestamp; a bad one is `invalid_timestamp`, not `invalid_field`. */
const STAMP_FIELDS = new Set(['timestamp', 'originalTimestamp', 'sentAt']);

/** One message as an SDK sends it (before enrichment). Unknown fields are kept. */
export const InboundMessage = z.looseObject({
  type: z.string().optional().describe('track, identify, page, screen, group or alias; set by the path for single calls'),
  messageId: z.string().nullish(),
  userId: userOrAnon,
  anonymousId: userOrAnon,
  event: z.string().nullish(),
  name: z.string().nullish(),
  category: z.string().nullish(),
  groupId: id,
  previousId: id,
  properties: obj,
  traits: obj,
  context: obj,
  integrations: obj,
  timestamp: stamp.describe('when the event happened on the client; absent: when it was received'),
  originalTimestamp: stamp.describe('the client time when there is no timestamp (RudderStack SDKs send this one)'),
  sentAt: stamp.describe('when the client sent it: with a client time, the timestamp is corrected for clock skew'),
  routing: z.unknown().optional().describe("Orrery's own: dropped from what a client sends, as v, sourceId and receivedAt are overwritten"),
  writeKey: z.string().optional(),
});
export type InboundMessage = z.infer<typeof InboundMessage>;

export const BatchRequest = z.looseObject({
  batch: z.array(z.unknown()).describe('the messages, each with its own type'),
  context: obj,
  integrations: obj,
  sentAt: stamp,
  writeKey: z.string().optional(),
});
export type BatchRequest = z.infer<typeof BatchRequest>;

/** A message that passed validation: identity present (an empty id is absent), timestamps parsed. */
export interface ValidMessage {
  msg: InboundMessage;
  type: CallType;
  userId: string | undefined;
  anonymousId: string | undefined;
  /**
   * The client's time of the event, ms since epoch: its `timestamp`, else its
   * `originalTimestamp` (what RudderStack SDKs send); undefined when neither.
   */
  timestamp: number | undefined;
  sentAt: number | undefined;
}

/** Batch-level fields that apply to every item, validated. */
export interface ValidBatch {
  batch: BatchRequest;
  /** ms since epoch, or undefined when absent. */
  sentAt: number | undefined;
}

const CALL_SET = new Set<string>(CALL_TYPES);

function fail(code: string, message: string, index: number | undefined, extra: Record<string, unknown> = {}): never {
  throw new InputError(code, message, 400, index === undefined ? extra : { index, ...extra });
}

/** Turns the first zod issue into Segment-style codes: timestamps get their own. */
function failParse(error: z.ZodError, index: number | undefined): never {
  const issue = error.issues[0]!;
  const field = issue.path.join('.');
  if (issue.path.length === 1 && STAMP_FIELDS.has(field)) {
    fail('invalid_timestamp', `${field} must be an ISO-8601 date-time or epoch milliseconds within ${TIMESTAMP_RANGE.text}`, index, { field });
  }
  fail('invalid_field', `${field}: ${issue.message}`, index, { field });
}

/**
 * Refuses a field that nests deeper than MAX_JSON_DEPTH, before anything recursive (zod does
 * not descend into JSON objects; JSON.stringify would, and overflow the stack).
 */
function checkDepth(o: Record<string, unknown>, index: number | undefined, fields: Iterable<string> = Object.keys(o)): void {
  for (const field of fields) {
    if (nestsDeeperThan(o[field], MAX_JSON_DEPTH)) {
      fail('nesting_too_deep', `${field} nests deeper than ${MAX_JSON_DEPTH} levels of objects and arrays`, index, { field, maxDepth: MAX_JSON_DEPTH });
    }
  }
}

/**
 * Validates one message. `type` comes from the path for single calls; for batch items it
 * must be in the message. Throws an InputError with Segment's code and, in a batch, the
 * item's index.
 */
export function validateMessage(raw: unknown, opts: { type?: CallType; index?: number }): ValidMessage {
  const { index } = opts;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('invalid_message', 'a message must be a JSON object', index);
  checkDepth(raw as Record<string, unknown>, index);
  const parsed = InboundMessage.safeParse(raw);
  if (!parsed.success) failParse(parsed.error, index);
  const msg = parsed.data;
  const type = opts.type ?? msg.type;
  if (type === undefined || type === '') fail('missing_type', 'every batch item needs a type', index);
  if (!CALL_SET.has(type)) fail('invalid_type', `unknown type "${type}": use one of ${CALL_TYPES.join(', ')}`, index);

  const userId = msg.userId || undefined;
  const anonymousId = msg.anonymousId || undefined;
  if (userId === undefined && anonymousId === undefined) fail('no_user_anon_id', 'userId or anonymousId is required', index);
  if (msg.messageId && msg.messageId.length > MESSAGE_ID_MAX) {
    fail('message_id_too_long', `messageId is longer than ${MESSAGE_ID_MAX} characters`, index);
  }
  if (type === 'track' && !msg.event) fail('missing_event', 'a track call needs an event name', index);
  if (type === 'group' && !msg.groupId) fail('missing_group_id', 'a group call needs a groupId', index);
  if (type === 'alias' && !msg.previousId) fail('missing_previous_id', 'an alias call needs a previousId', index);

  return {
    msg,
    type: type as CallType,
    userId,
    anonymousId,
    timestamp: clientTimestampMs(msg.timestamp) ?? clientTimestampMs(msg.originalTimestamp),
    sentAt: clientTimestampMs(msg.sentAt),
  };
}

/**
 * Validates a batch request's own fields (its items are validated one by one). The
 * batch-level `context` and `integrations` are merged into every item, so they are held to
 * the same depth; its `sentAt` to the same timestamp rule.
 */
export function validateBatch(body: unknown): ValidBatch {
  const parsed = BatchRequest.safeParse(body);
  if (!parsed.success) {
    if (parsed.error.issues[0]!.path[0] === 'sentAt') failParse(parsed.error, undefined);
    throw new InputError('invalid_batch', 'the body must be an object with a "batch" array');
  }
  checkDepth(parsed.data, undefined, ['context', 'integrations']);
  return { batch: parsed.data, sentAt: clientTimestampMs(parsed.data.sentAt) };
}

/** Parses a request body as JSON; a body that is not JSON is a 400 `invalid_json`. */
export function parseJson(text: string): unknown {
  if (text.trim() === '') throw new InputError('invalid_json', 'the request body is empty');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InputError('invalid_json', `the request body is not valid JSON: ${(err as Error).message}`);
  }
}
