import { z } from 'zod';
import { MAX_JSON_DEPTH, MESSAGE_ID_MAX } from '../core/envelope.ts';
import { BatchRequest, InboundMessage, LIMITS } from './validate.ts';

const Success = z.object({ success: z.literal(true) });
const ErrorBody = z.object({
  success: z.literal(false),
  code: z
    .string()
    .describe('machine-readable, e.g. no_user_anon_id, missing_event, invalid_field, invalid_timestamp, nesting_too_deep, invalid_json, invalid_encoding, invalid_compression, unsupported_encoding, payload_too_large, invalid_write_key, rate_limited'),
  message: z.string(),
  details: z
    .object({
      index: z.number().int().optional().describe('for a batch: the offending message'),
      field: z.string().optional().describe('the offending field, for invalid_field, invalid_timestamp and nesting_too_deep'),
      maxDepth: z.number().int().optional().describe(`for nesting_too_deep: the limit (${MAX_JSON_DEPTH})`),
    })
    .catchall(z.unknown())
    .optional()
    .describe('the rest, machine-readable (core/contracts/http-error.ts: the same body on every surface)'),
});

const CALLS = ['track', 'identify', 'page', 'screen', 'group', 'alias'] as const;
type Call = (typeof CALLS)[number];
const SHORT: Record<Call, string> = { track: 't', identify: 'i', page: 'p', screen: 's', group: 'g', alias: 'a' };

/**
 * The rules validateMessage checks after the zod parse, as JSON Schema, so that the
 * document states what a call needs: an identity (userId or anonymousId, not empty), a
 * messageId of at most MESSAGE_ID_MAX characters, and each call type's own field.
 */
const nonEmptyId = { anyOf: [{ type: 'string', minLength: 1 }, { type: 'number' }] };
const MESSAGE_RULES = {
  properties: { messageId: { anyOf: [{ type: 'string', maxLength: MESSAGE_ID_MAX }, { type: 'null' }] } },
  anyOf: [
    { required: ['userId'], properties: { userId: nonEmptyId } },
    { required: ['anonymousId'], properties: { anonymousId: nonEmptyId } },
  ],
};
const CALL_RULES: Record<Call, Record<string, unknown>> = {
  track: { required: ['event'], properties: { event: { type: 'string', minLength: 1 } } },
  identify: {},
  page: {},
  screen: {},
  group: { required: ['groupId'], properties: { groupId: nonEmptyId } },
  alias: { required: ['previousId'], properties: { previousId: nonEmptyId } },
};
const capital = (call: Call) => `${call[0]!.toUpperCase()}${call.slice(1)}`;

/**
 * The OpenAPI 3.1 document of the ingest API, generated from the same zod schemas that
 * validate requests, so the two cannot drift.
 */
export function buildOpenApi(): Record<string, unknown> {
  const schema = (s: z.ZodType) => z.toJSONSchema(s, { target: 'draft-2020-12', io: 'input', unrepresentable: 'any' });
  const errors = {
    '400': { description: `Invalid JSON or a body that is not UTF-8, an invalid message (a bad timestamp, a field nesting deeper than ${MAX_JSON_DEPTH} levels), or a payload over the limits (as Segment: payload_too_large, event_too_large)`, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
    '401': { description: 'Missing, unknown or disabled write key', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
    '403': { description: 'Origin not allowed for this source', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
    '429': { description: 'Over the source rate limit; see Retry-After and X-RateLimit-Reset (seconds)', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
    '503': { description: 'Neither Kafka nor the local spool can take the events; retry after Retry-After', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
  };
  const body = (ref: string) => ({
    required: true,
    // analytics.js posts its JSON as text/plain, which spares the browser a CORS preflight.
    description: 'JSON; as text/plain too (the same JSON text), as analytics.js sends it',
    content: {
      'application/json': { schema: { $ref: `#/components/schemas/${ref}` } },
      'text/plain': { schema: { $ref: `#/components/schemas/${ref}` } },
    },
  });
  const ok = { '200': { description: 'Durable: acknowledged by Kafka, or fsync\'d to the local spool', content: { 'application/json': { schema: { $ref: '#/components/schemas/Success' } } } } };
  const paths: Record<string, unknown> = {};
  for (const call of CALLS) {
    const op = { summary: `${call} call (at most ${LIMITS.maxEventBytes} bytes)`, tags: ['tracking'], requestBody: body(capital(call)), responses: { ...ok, ...errors } };
    paths[`/v1/${call}`] = { post: { ...op, operationId: call } };
    paths[`/v1/${SHORT[call]}`] = { post: { ...op, operationId: `${call}Short` } };
  }
  for (const path of ['batch', 'import', 'b']) {
    paths[`/v1/${path}`] = {
      post: {
        operationId: path,
        summary: `Many messages (at most ${LIMITS.maxBatchEvents} and ${LIMITS.maxBatchBytes} bytes; ${LIMITS.maxEventBytes} bytes each)`,
        tags: ['tracking'],
        requestBody: body('Batch'),
        responses: { ...ok, ...errors },
      },
    };
  }
  paths['/v1/pixel/{type}'] = {
    get: {
      operationId: 'pixel',
      summary: 'Tracking pixel: answers a 1×1 GIF',
      tags: ['tracking'],
      parameters: [
        { name: 'type', in: 'path', required: true, schema: { enum: [...CALLS, ...Object.values(SHORT)] } },
        {
          name: 'data',
          in: 'query',
          required: true,
          description: 'base64 (standard or URL-safe, padding optional) of the message JSON, which carries the writeKey and follows the rules of the call type in the path',
          schema: { type: 'string', minLength: 1, contentEncoding: 'base64', contentMediaType: 'application/json' },
        },
      ],
      // The write key travels inside `data`: an <img> sends no Authorization header.
      security: [],
      responses: { '200': { description: 'accepted', content: { 'image/gif': {} } }, ...errors },
    },
  };
  paths['/v1/m'] = {
    post: {
      operationId: 'sdkMetrics',
      summary: "analytics.js's own metrics (sent every 30 s, without a write key): taken and dropped",
      tags: ['tracking'],
      security: [],
      requestBody: { content: { 'text/plain': { schema: {} }, 'application/json': { schema: {} } } },
      responses: { ...ok, '400': errors['400'] },
    },
  };
  return {
    openapi: '3.1.0',
    info: { title: 'Orrery ingest (Segment HTTP Tracking API)', version: '1' },
    components: {
      securitySchemes: { writeKey: { type: 'http', scheme: 'basic', description: 'the write key as the username, empty password' } },
      schemas: {
        Message: schema(InboundMessage),
        ...Object.fromEntries(CALLS.map((call) => [capital(call), { allOf: [{ $ref: '#/components/schemas/Message' }, MESSAGE_RULES, CALL_RULES[call]] }])),
        Batch: {
          allOf: [
            schema(BatchRequest),
            {
              properties: {
                batch: {
                  type: 'array',
                  minItems: 1,
                  maxItems: LIMITS.maxBatchEvents,
                  // Each item names its type, and follows that call's rules.
                  items: {
                    anyOf: CALLS.map((call) => ({
                      allOf: [{ $ref: `#/components/schemas/${capital(call)}` }, { required: ['type'], properties: { type: { const: call } } }],
                    })),
                  },
                },
              },
            },
          ],
        },
        Success: schema(Success),
        Error: schema(ErrorBody),
      },
    },
    security: [{ writeKey: [] }],
    paths,
  };
}
