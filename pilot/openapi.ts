import { z } from 'zod';
import {
  AlertView,
  ConfigView,
  CreateSourceBody,
  DeadLetterView,
  DebuggerStatusView,
  DebugEventView,
  DemoDeliveryView,
  DeployView,
  DestinationUpdateBody,
  DestinationWriteBody,
  ErrorBody,
  LIST_LIMITS,
  MetricsSummaryView,
  ReplayBody,
  ReplayResult,
  RotateKeyBody,
  RouteUpdateBody,
  RouteWriteBody,
  SourceView,
  SourceWithKey,
  VersionBody,
} from './schemas.ts';
import { DestinationConfig, RouteConfig } from '../core/control-plane.ts';
import { DESTINATIONS } from '../sinks/destinations/index.ts';

type JsonSchema = Record<string, unknown>;
type Param = { name: string; in: 'path' | 'query'; description?: string; schema: JsonSchema };

type Op = {
  summary: string;
  tag: string;
  /** Validates the request body; an empty body counts as `{}`, so the body is required when `{}` fails. */
  body?: z.ZodType;
  /** The body's JSON Schema when zod's cannot say it all (a destination's settings depend on its type). */
  bodySchema?: JsonSchema;
  ok: z.ZodType | { description: string; content: Record<string, unknown> };
  status?: number;
  /** Besides 401; 400 is added for operations that take a body or query parameters. */
  errors?: number[];
  params?: Param[];
  /** Details the summary leaves out: rules no schema can state. */
  description?: string;
};

const ERROR_TEXT: Record<number, string> = {
  400: 'invalid JSON or an invalid request (details.issues names each field), or payload_too_large (a body over 512 KB; 400 on every surface, as Segment answers)',
  401: 'missing_token or invalid_token',
  404: 'not_found',
  409: 'control_plane_conflict (expectedVersion is stale), an id that exists already, or a reference the control plane does not hold (no_such_source, no_such_destination)',
};

/** No U+0000: the control plane is JSON in PostgreSQL, which refuses it (api.ts answers 400). */
const NO_NUL = '^[^\\u0000]*$';
const JSON_REF = { $ref: '#/components/schemas/Json' };

/**
 * A request body's JSON Schema with the rule api.ts applies to every body: no U+0000 in any
 * string or key. Strings without a pattern, enum or const get NO_NUL (the patterns there
 * exclude it already), objects that take any key get it as `propertyNames` (and Json as the
 * values of unknown keys), and any JSON value (`{}`) becomes the Json component, which holds
 * to the same.
 */
function noNul(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(noNul);
  if (s === null || typeof s !== 'object') return s;
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) {
    o[k] = k === 'properties' || k === '$defs' ? Object.fromEntries(Object.entries(v as object).map(([name, p]) => [name, noNul(p)])) : noNul(v);
  }
  const keywords = Object.keys(o).filter((k) => k !== 'description' && k !== 'default' && k !== 'title');
  if (keywords.length === 0) return { ...o, ...JSON_REF };
  if (o.type === 'string' && o.pattern === undefined && o.enum === undefined && o.const === undefined) o.pattern = NO_NUL;
  if (o.type === 'object' && o.additionalProperties !== false) {
    o.propertyNames = { ...(o.propertyNames as object | undefined), pattern: NO_NUL };
    // Unknown keys hold any JSON value, held to the same rule.
    o.additionalProperties ??= JSON_REF;
  }
  return o;
}

/**
 * The OpenAPI 3.1 document of the Pilot API, generated from the zod schemas that validate
 * its requests.
 *
 * @example app.get('/api/openapi.json', (c) => c.json(buildOpenApi()));
 */
export function buildOpenApi(): Record<string, unknown> {
  // Inlined, without $schema: a `#/…` reference inside would resolve against this document.
  const convert = (s: z.ZodType, io: 'input' | 'output') => {
    const { $schema: _, ...rest } = z.toJSONSchema(s, { target: 'draft-2020-12', io, unrepresentable: 'any' });
    return rest;
  };
  const schema = (s: z.ZodType) => convert(s, 'input');
  const out = (s: z.ZodType) => convert(s, 'output');
  const json = (s: JsonSchema) => ({ 'application/json': { schema: s } });
  const list = (key: string, item: z.ZodType) => z.object({ version: z.number().int().optional(), [key]: z.array(item) });
  const id = (name: string, schema: JsonSchema = { type: 'string' }): Param => ({ name, in: 'path', schema });
  /** The numeric ids of dead letters and deploys: any other path segment is a 404 (or a 405 where another method serves it). */
  const seq = (name: string) => id(name, { type: 'integer', minimum: 1 });
  const q = (name: string, description: string, schema: JsonSchema = { type: 'string' }): Param => ({ name, in: 'query', description, schema });
  // Query integers are checked by intQuery in api.ts: 0 up to MAX_SAFE_INTEGER unless a tighter range is given.
  const integer = (minimum = 0, maximum = Number.MAX_SAFE_INTEGER): JsonSchema => ({ type: 'integer', minimum, maximum });
  // Query flags: true or false (absent: false), anything else is a 400.
  const flag: JsonSchema = { type: 'boolean' };
  const limit = (max: number) => q('limit', `at most ${max}`, integer(1, max));
  const expected = q('expectedVersion', 'optimistic concurrency: 409 control_plane_conflict unless the control plane is still at this version', integer());

  /**
   * A destination as POST and PUT take it: one schema per type (webhook, amplitude, …), each
   * the common fields and that sink's own settings, as checkDestination in api.ts checks
   * them. An update names its destination in the path only.
   */
  const destination = (update: boolean): JsonSchema => {
    const common = schema(DestinationConfig) as { properties: Record<string, JsonSchema> };
    return {
      anyOf: [...DESTINATIONS.values()].map((m) => {
        const own = schema(m.configSchema) as { properties?: Record<string, JsonSchema>; required?: string[]; additionalProperties?: unknown };
        const { id: idField, ...rest } = common.properties;
        return {
          title: m.type,
          type: 'object',
          properties: { ...(update ? {} : { id: idField }), ...rest, type: { const: m.type }, ...own.properties },
          required: [...(update ? [] : ['id']), 'type', ...(own.required ?? [])],
          // Strict settings refuse unknown fields; the others keep them.
          ...(own.additionalProperties === false ? { additionalProperties: false } : {}),
          ...(update ? { not: { required: ['id'] } } : {}),
        };
      }),
    };
  };
  const destinationBody = (body: z.ZodType, update: boolean): JsonSchema => {
    const s = schema(body) as { properties: Record<string, JsonSchema> };
    return { ...s, properties: { ...s.properties, destination: { description: s.properties.destination?.description, ...destination(update) } } };
  };
  /** An SSE event as the stream writes it: its name, and its data (JSON unless said otherwise). */
  const sse = (event: string, data: JsonSchema, extra: JsonSchema = {}): JsonSchema => ({
    type: 'object',
    required: ['event', 'data'],
    properties: { event: { const: event }, data, id: { type: 'string' }, ...extra },
  });
  const jsonData = (s: z.ZodType): JsonSchema => ({ type: 'string', contentMediaType: 'application/json', contentSchema: out(s) });

  const ops: Record<string, Record<string, Op>> = {
    '/api/config': { get: { summary: 'The whole control plane, secrets redacted', tag: 'config', ok: ConfigView } },
    '/api/sources': {
      get: { summary: 'List sources (keys by id only)', tag: 'sources', ok: list('sources', SourceView) },
      post: { summary: 'Create a source; answers its write key, this once', tag: 'sources', body: CreateSourceBody, ok: SourceWithKey, status: 201, errors: [400, 409] },
    },
    '/api/sources/{id}/rotate-key': {
      post: { summary: 'Add a new write key (answered once); removeOld drops the others', tag: 'sources', body: RotateKeyBody, ok: SourceWithKey, params: [id('id')], errors: [400, 404, 409] },
    },
    '/api/sources/{id}/keys/{keyId}': {
      delete: { summary: 'Remove one key (finish a rotation)', tag: 'sources', ok: z.object({ version: z.number(), source: SourceView }), params: [id('id'), id('keyId'), expected], errors: [404, 409] },
    },
    '/api/sources/{id}/enable': { post: { summary: 'Enable a source', tag: 'sources', body: VersionBody, ok: z.object({ version: z.number(), source: SourceView }), params: [id('id')], errors: [404, 409] } },
    '/api/sources/{id}/disable': { post: { summary: 'Disable a source: ingest answers 401 source_disabled', tag: 'sources', body: VersionBody, ok: z.object({ version: z.number(), source: SourceView }), params: [id('id')], errors: [404, 409] } },
    '/api/destinations': {
      get: { summary: 'List destinations, secrets redacted', tag: 'destinations', ok: z.object({ version: z.number(), destinations: z.array(z.record(z.string(), z.unknown())) }) },
      post: { summary: 'Create a destination (settings checked by its type)', tag: 'destinations', body: DestinationWriteBody, bodySchema: destinationBody(DestinationWriteBody, false), ok: z.object({ version: z.number(), destination: z.record(z.string(), z.unknown()) }), status: 201, errors: [400, 409] },
    },
    '/api/destinations/{id}': {
      put: {
        summary: 'Replace a destination ("[redacted]" keeps a stored secret)',
        description: 'The path names the destination; a body that names one too must name the same. "[redacted]" where there is no stored value to keep is a 400.',
        tag: 'destinations',
        body: DestinationUpdateBody,
        bodySchema: destinationBody(DestinationUpdateBody, true),
        ok: z.object({ version: z.number(), destination: z.record(z.string(), z.unknown()) }), params: [id('id')], errors: [400, 404, 409] },
      delete: { summary: 'Delete a destination (cascade=true: and its routes)', tag: 'destinations', ok: z.object({ version: z.number(), deleted: z.string() }), params: [id('id'), expected, q('cascade', 'also delete the routes to it (otherwise routes to it are a 409 destination_in_use)', flag)], errors: [404, 409] },
    },
    '/api/routes': {
      get: { summary: 'List routes', tag: 'routes', ok: list('routes', RouteConfig) },
      post: {
        summary: 'Create a route (one per source and destination)',
        description: 'Its source and destination must exist: a route to one the control plane does not hold is a 409 (no_such_source, no_such_destination), as the same request succeeds once they are created.',
        tag: 'routes',
        body: RouteWriteBody, ok: z.object({ version: z.number(), route: RouteConfig }), status: 201, errors: [400, 409] },
    },
    '/api/routes/{source}/{destination}': {
      put: { summary: "Replace a route's filter, transforms and enabled", tag: 'routes', body: RouteUpdateBody, ok: z.object({ version: z.number(), route: RouteConfig }), params: [id('source'), id('destination')], errors: [400, 404, 409] },
      delete: { summary: 'Delete a route', tag: 'routes', ok: z.object({ version: z.number(), deleted: z.object({ source: z.string(), destination: z.string() }) }), params: [id('source'), id('destination'), expected], errors: [404, 409] },
    },
    '/api/dead-letters': {
      get: {
        summary: "Dead letters of the router (events it could not route) and of the sinks (events a destination would not take), oldest first, pending unless includeReplayed=true; pending counts per destination and per stage",
        tag: 'dead letters',
        ok: z.object({
          deadLetters: z.array(DeadLetterView),
          pending: z.record(z.string(), z.number()).describe('sink letters per destination'),
          pendingByStage: z.object({ sink: z.number(), router: z.number() }),
        }),
        params: [
          q('stage', 'router or sink (absent or empty: both)', { type: 'string', enum: ['', 'router', 'sink'] }),
          q('destination', 'one destination (sink letters only: with stage=router, the list is empty)'),
          q('includeReplayed', 'replayed ones too', flag),
          limit(LIST_LIMITS.deadLetters),
        ],
        errors: [400, 409],
      },
    },
    '/api/dead-letters/{id}': { get: { summary: 'One dead letter, with its event and error', tag: 'dead letters', ok: DeadLetterView, params: [seq('id')], errors: [404, 409] } },
    '/api/dead-letters/replay': {
      post: {
        summary: 'Re-send dead letters, each once: sink letters to their destinations with the current settings, router letters onto the raw topic (raw bytes, original key) to be routed again',
        tag: 'dead letters',
        body: ReplayBody,
        // Router letters have no destination (pilot/dead-letters.ts): that pair is a 400.
        bodySchema: { ...schema(ReplayBody), not: { required: ['stage', 'destinationId'], properties: { stage: { const: 'router' } } } },
        ok: ReplayResult,
        errors: [400, 409],
      },
    },
    '/api/dead-letters/{id}/replay': { post: { summary: 'Re-send one dead letter', tag: 'dead letters', ok: ReplayResult, params: [seq('id')], errors: [404, 409] } },
    '/api/deploys': {
      get: { summary: 'Deploy requests, newest first, with their timeline', tag: 'deploys', ok: z.object({ deploys: z.array(DeployView), available: z.boolean() }), params: [limit(LIST_LIMITS.deploys), q('policy', 'one image policy')] },
    },
    '/api/deploys/{id}': { get: { summary: 'One deploy', tag: 'deploys', ok: DeployView, params: [seq('id')], errors: [404] } },
    '/api/webhooks/refusals': {
      get: {
        summary: 'Webhooks refused lately (registry, git, demo), per receiver and reason: how often, first and last time; logged once per window',
        tag: 'deploys',
        ok: z.object({
          windowMs: z.number(),
          refusals: z.array(z.object({ receiver: z.string(), reason: z.string(), status: z.number(), count: z.number(), firstAt: z.number(), lastAt: z.number() })),
        }),
      },
    },
    '/api/image-policies': { get: { summary: 'Image policies from the config', tag: 'deploys', ok: z.object({ policies: z.array(z.record(z.string(), z.unknown())) }) } },
    '/api/metrics/summary': { get: { summary: 'Delivered, failed and dead-lettered per destination; ingest accepted and rejected', tag: 'metrics', ok: MetricsSummaryView } },
    '/api/metrics/series': {
      get: { summary: 'Per-interval increases for the charts (last quarter of an hour)', tag: 'metrics', ok: z.object({ everyMs: z.number(), points: z.array(z.record(z.string(), z.unknown())) }) },
    },
    '/api/alerts': {
      get: { summary: 'Alert rules, pending and firing alerts, recent notifications', tag: 'alerts', ok: z.object({ webhookConfigured: z.boolean(), rules: z.array(z.record(z.string(), z.unknown())), active: z.array(AlertView), recent: z.array(z.record(z.string(), z.unknown())) }) },
    },
    '/api/debugger/status': {
      get: { summary: "The debugger's consumer group and the sources it has seen", tag: 'debugger', ok: DebuggerStatusView.extend({ sources: z.array(z.object({ sourceId: z.string(), events: z.number(), lastAt: z.number() })) }) },
    },
    '/api/debugger/events': {
      get: { summary: 'The last events (200 per source), oldest first', tag: 'debugger', ok: z.object({ events: z.array(DebugEventView) }), params: [q('source', 'one source'), limit(LIST_LIMITS.debuggerEvents)] },
    },
    '/api/debugger/stream': {
      get: {
        summary: 'Server-Sent Events: `event` (DebugEvent), `delivered` (demo webhook), `hello`, `bye` (reconnect with the cursors)',
        tag: 'debugger',
        ok: {
          description: 'an event stream; the schema is that of each event (name, data, id, retry)',
          content: {
            'text/event-stream': {
              schema: {
                anyOf: [
                  sse('hello', jsonData(DebuggerStatusView), { retry: { type: 'integer' } }),
                  sse('event', jsonData(DebugEventView)),
                  sse('delivered', jsonData(DemoDeliveryView)),
                  sse('bye', { const: 'reconnect' }),
                ],
              },
            },
          },
        },
        params: [q('source', 'one source'), q('since', 'the last seq seen', integer()), q('deliveredSince', 'the last delivery seq seen', integer())],
      },
    },
    '/api/demo/deliveries': { get: { summary: 'What the demo webhook received', tag: 'debugger', ok: z.object({ deliveries: z.array(DemoDeliveryView) }) } },
  };

  const paths: Record<string, Record<string, unknown>> = {};
  for (const [path, methods] of Object.entries(ops)) {
    paths[path] = {};
    for (const [method, op] of Object.entries(methods)) {
      const okResponse = op.ok instanceof z.ZodType ? { description: 'OK', content: json(out(op.ok)) } : op.ok;
      const errors = new Set([401, ...(op.errors ?? [])]);
      if (op.body || op.params?.some((p) => p.in === 'query')) errors.add(400);
      const responses: Record<string, unknown> = { [String(op.status ?? 200)]: okResponse };
      for (const status of [...errors].sort()) responses[String(status)] = { description: ERROR_TEXT[status], content: json({ $ref: '#/components/schemas/Error' }) };
      paths[path][method] = {
        operationId: `${method}${path.replace(/\{(\w+)\}/g, 'By_$1').replace(/[^a-zA-Z0-9]+(.)?/g, (_, ch: string | undefined) => (ch ? ch.toUpperCase() : ''))}`,
        summary: op.summary,
        ...(op.description ? { description: op.description } : {}),
        tags: [op.tag],
        ...(op.params ? { parameters: op.params.map((p) => ({ required: p.in === 'path', ...p })) } : {}),
        ...(op.body ? { requestBody: { required: !op.body.safeParse({}).success, content: json(noNul(op.bodySchema ?? schema(op.body)) as JsonSchema) } } : {}),
        responses,
      };
    }
  }
  paths['/pilot/demo-webhook'] = {
    post: {
      operationId: 'demoWebhook',
      summary: 'The demo destination posts here, signed the Standard Webhooks way with its secret (no token: it is a destination); the UI shows what arrived',
      tags: ['debugger'],
      security: [],
      requestBody: { required: true, content: json({}) },
      responses: { '200': { description: 'taken' }, '400': { description: 'not JSON' }, '401': { description: 'not signed by a destination that posts here (missing_signature, bad_signature, stale_timestamp)' } },
    },
  };
  paths['/api/openapi.json'] = { get: { operationId: 'openapi', summary: 'This document (no token needed)', tags: ['meta'], security: [], responses: { '200': { description: 'OpenAPI 3.1' } } } };

  return {
    openapi: '3.1.0',
    info: { title: 'Orrery Pilot API', version: '1', description: 'Sources, destinations and routes (versioned), dead letters, deploys, metrics, alerts and the live event debugger.' },
    components: {
      securitySchemes: { adminToken: { type: 'http', scheme: 'bearer', description: 'PILOT_ADMIN_TOKEN (or the token logged once at start)' } },
      schemas: {
        Error: out(ErrorBody),
        Json: {
          description: 'any JSON value without U+0000 in its strings and keys',
          anyOf: [
            { type: ['null', 'boolean', 'number'] },
            { type: 'string', pattern: NO_NUL },
            { type: 'array', items: JSON_REF },
            { type: 'object', propertyNames: { pattern: NO_NUL }, additionalProperties: JSON_REF },
          ],
        },
      },
    },
    security: [{ adminToken: [] }],
    paths,
  };
}
