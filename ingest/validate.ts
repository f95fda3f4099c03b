import { z } from 'zod';
import { CALL_TYPES, jsonObject, MESSAGE_ID_MAX, type CallType } from '../core/envelope.ts';
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
const obj = jsonObject.nullish();
const stamp = z.union([z.string(), z.number()]).nullish();

/** One message as an SDK sends it (before enrichment). Unknown fields are kept. */
export const InboundMessage = z.looseObject({
  type: z.string().optional().describe('track, identify, page, screen, group or alias; set by the path for single calls'),
  messageId: z.string().nullish(),
  userId: id,
  anonymousId: id,
  event: z.string().nullish(),
  name: z.string().nullish(),
  category: z.string().nullish(),
  groupId: id,
  previousId: id,
  properties: obj,
  traits: obj,
  context: obj,
  integrations: obj,
  timestamp: stamp,
  originalTimestamp: stamp,
  sentAt: stamp,
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

/** A message that passed validation: identity present, timestamps parsed. */
export interface ValidMessage {
  msg: InboundMessage;
  type: CallType;
  userId: string | undefined;
  anonymousId: string | undefined;
  /** ms since epoch, or undefined when absent. */
  timestamp: number | undefined;
  sentAt: number | undefined;
}

const CALL_SET = new Set<string>(CALL_TYPES);

function fail(code: string, message: string, index: number | undefined, extra: Record<string, unknown> = {}): never {
  throw new InputError(code, message, 400, index === undefined ? extra : { index, ...extra });
}

/** Parses an ISO-8601 string (or epoch ms) the way SDKs send them; undefined when absent. */
function parseStamp(value: unknown, field: string, index: number | undefined): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const ms = typeof value === 'number' ? value : Date.parse(value as string);
  if (!Number.isFinite(ms)) fail('invalid_timestamp', `${field} is not an ISO-8601 date`, index, { field });
  return ms;
}

/**
 * Validates one message. `type` comes from the path for single calls; for batch items it
 * must be in the message. Throws an InputError with Segment's code and, in a batch, the
 * item's index.
 */
export function validateMessage(raw: unknown, opts: { type?: CallType; index?: number }): ValidMessage {
  const { index } = opts;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('invalid_message', 'a message must be a JSON object', index);
  const parsed = InboundMessage.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.');
    fail('invalid_field', `${field}: ${issue.message}`, index, { field });
  }
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
    timestamp: parseStamp(msg.timestamp, 'timestamp', index),
    sentAt: parseStamp(msg.sentAt, 'sentAt', index),
  };
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
