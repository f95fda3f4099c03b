import { z } from 'zod';
import {
  AlertView,
  ConfigView,
  CreateSourceBody,
  DeadLetterView,
  DebugEventView,
  DeployView,
  DestinationUpdateBody,
  DestinationWriteBody,
  ErrorBody,
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
import { RouteConfig } from '../core/control-plane.ts';

type Op = {
  summary: string;
  tag: string;
  body?: z.ZodType;
  ok: z.ZodType | { description: string; content: Record<string, unknown> };
  status?: number;
  errors?: number[];
  params?: Array<{ name: string; in: 'path' | 'query'; description?: string; schema?: Record<string, unknown> }>;
  public?: boolean;
};

const ERROR_TEXT: Record<number, string> = {
  400: 'invalid JSON or an invalid request (details.issues names each field)',
  401: 'missing_token or invalid_token',
  404: 'not_found',
  409: 'control_plane_conflict (expectedVersion is stale), read_only_control_plane (no database), an id that exists already, or no_database',
};

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
  const json = (s: Record<string, unknown>) => ({ 'application/json': { schema: s } });
  const list = (key: string, item: z.ZodType) => z.object({ version: z.number().int().optional(), [key]: z.array(item) });
  const id = (name: string, description?: string) => ({ name, in: 'path' as const, required: true, schema: { type: 'string' }, ...(description ? { description } : {}) });
  const q = (name: string, description: string, type = 'string') => ({ name, in: 'query' as const, required: false, description, schema: { type } });
  const expected = q('expectedVersion', 'optimistic concurrency: 409 control_plane_conflict unless the control plane is still at this version', 'integer');

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
      post: { summary: 'Create a destination (settings checked by its type)', tag: 'destinations', body: DestinationWriteBody, ok: z.object({ version: z.number(), destination: z.record(z.string(), z.unknown()) }), status: 201, errors: [400, 409] },
    },
    '/api/destinations/{id}': {
      put: { summary: 'Replace a destination ("[redacted]" keeps a stored secret)', tag: 'destinations', body: DestinationUpdateBody, ok: z.object({ version: z.number(), destination: z.record(z.string(), z.unknown()) }), params: [id('id')], errors: [400, 404, 409] },
      delete: { summary: 'Delete a destination (cascade=true: and its routes)', tag: 'destinations', ok: z.object({ version: z.number(), deleted: z.string() }), params: [id('id'), expected, q('cascade', 'also delete the routes to it', 'boolean')], errors: [404, 409] },
    },
    '/api/routes': {
      get: { summary: 'List routes', tag: 'routes', ok: list('routes', RouteConfig) },
      post: { summary: 'Create a route (one per source and destination)', tag: 'routes', body: RouteWriteBody, ok: z.object({ version: z.number(), route: RouteConfig }), status: 201, errors: [400, 409] },
    },
    '/api/routes/{source}/{destination}': {
      put: { summary: "Replace a route's filter, transforms and enabled", tag: 'routes', body: RouteUpdateBody, ok: z.object({ version: z.number(), route: RouteConfig }), params: [id('source'), id('destination')], errors: [400, 404, 409] },
      delete: { summary: 'Delete a route', tag: 'routes', ok: z.object({ version: z.number() }), params: [id('source'), id('destination'), expected], errors: [404, 409] },
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
          q('stage', 'router or sink (default: both)'),
          q('destination', 'one destination (sink letters only)'),
          q('includeReplayed', 'replayed ones too', 'boolean'),
          q('limit', 'at most 1000', 'integer'),
        ],
        errors: [400, 409],
      },
    },
    '/api/dead-letters/{id}': { get: { summary: 'One dead letter, with its event and error', tag: 'dead letters', ok: DeadLetterView, params: [id('id')], errors: [404, 409] } },
    '/api/dead-letters/replay': {
      post: {
        summary: 'Re-send dead letters, each once: sink letters to their destinations with the current settings, router letters onto the raw topic (raw bytes, original key) to be routed again',
        tag: 'dead letters',
        body: ReplayBody,
        ok: ReplayResult,
        errors: [400, 409],
      },
    },
    '/api/dead-letters/{id}/replay': { post: { summary: 'Re-send one dead letter', tag: 'dead letters', ok: ReplayResult, params: [id('id')], errors: [404, 409] } },
    '/api/deploys': {
      get: { summary: 'Deploy requests, newest first, with their timeline', tag: 'deploys', ok: z.object({ deploys: z.array(DeployView), available: z.boolean() }), params: [q('limit', 'at most 500', 'integer'), q('policy', 'one image policy')] },
    },
    '/api/deploys/{id}': { get: { summary: 'One deploy', tag: 'deploys', ok: DeployView, params: [id('id')], errors: [404] } },
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
      get: { summary: "The debugger's consumer group and the sources it has seen", tag: 'debugger', ok: z.object({ group: z.string().nullable(), ready: z.boolean(), failure: z.string().optional(), sources: z.array(z.object({ sourceId: z.string(), events: z.number(), lastAt: z.number() })) }) },
    },
    '/api/debugger/events': {
      get: { summary: 'The last events (200 per source), oldest first', tag: 'debugger', ok: z.object({ events: z.array(DebugEventView) }), params: [q('source', 'one source'), q('limit', 'at most 200', 'integer')] },
    },
    '/api/debugger/stream': {
      get: {
        summary: 'Server-Sent Events: `event` (DebugEvent), `delivered` (demo webhook), `hello`, `bye` (reconnect with the cursors)',
        tag: 'debugger',
        ok: { description: 'an event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
        params: [q('source', 'one source'), q('since', 'the last seq seen', 'integer'), q('deliveredSince', 'the last delivery seq seen', 'integer')],
      },
    },
    '/api/demo/deliveries': { get: { summary: 'What the demo webhook received', tag: 'debugger', ok: z.object({ deliveries: z.array(z.record(z.string(), z.unknown())) }) } },
  };

  const paths: Record<string, Record<string, unknown>> = {};
  for (const [path, methods] of Object.entries(ops)) {
    paths[path] = {};
    for (const [method, op] of Object.entries(methods)) {
      const okResponse = op.ok instanceof z.ZodType ? { description: 'OK', content: json(out(op.ok)) } : op.ok;
      const responses: Record<string, unknown> = { [String(op.status ?? 200)]: okResponse, '401': { description: ERROR_TEXT[401], content: json({ $ref: '#/components/schemas/Error' }) } };
      for (const status of op.errors ?? []) responses[String(status)] = { description: ERROR_TEXT[status], content: json({ $ref: '#/components/schemas/Error' }) };
      paths[path][method] = {
        operationId: `${method}${path.replace(/\{(\w+)\}/g, 'By_$1').replace(/[^a-zA-Z0-9]+(.)?/g, (_, ch: string | undefined) => (ch ? ch.toUpperCase() : ''))}`,
        summary: op.summary,
        tags: [op.tag],
        ...(op.params ? { parameters: op.params.map((p) => ({ required: p.in === 'path', ...p })) } : {}),
        ...(op.body ? { requestBody: { required: false, content: json(schema(op.body)) } } : {}),
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
      schemas: { Error: out(ErrorBody) },
    },
    security: [{ adminToken: [] }],
    paths,
  };
}
