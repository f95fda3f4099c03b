import { randomBytes } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { streamSSE, type SSEMessage } from 'hono/streaming';
import type { z } from 'zod';
import { errorResponse } from '../core/contracts/http-error.ts';
import type { ControlPlaneConfig, ControlPlaneSnapshot, DestinationConfig, SourceConfig } from '../core/control-plane.ts';
import { updateControlPlane } from '../core/control-plane-pg.ts';
import type { ControlPlaneSource } from '../core/control-plane-source.ts';
import { bearerAuth } from '../core/auth.ts';
import type { UnexpectedErrorHandler } from '../core/error-boundary.ts';
import { InputError, OrreryError } from '../core/errors.ts';
import type { ImagePolicy } from '../core/gitops-config.ts';
import type { Logger } from '../core/logger.ts';
import type { RefusalLog } from '../core/refusals.ts';
import type { Store } from '../core/store/types.ts';
import type { DeployLog } from '../gitops/deploys.ts';
import { hashWriteKey, hashWriteKeySync, keyIdOf } from '../core/contracts/write-keys.ts';
import type { ReplayResult } from '../sinks/dead-letters.ts';
import { DESTINATIONS } from '../sinks/destinations/index.ts';
import { destinationSettings } from '../sinks/destinations/types.ts';
import { replayToDestinations } from '../sinks/replay.ts';
import type { AlertMonitor } from './alerts.ts';
import { getAnyDeadLetter, listAllDeadLetters, pendingByStage, pendingCounts, replayAllDeadLetters, type DeadLetterFilter } from './dead-letters.ts';
import type { EventBuffer } from './debugger.ts';
import type { DemoReceiver } from './demo.ts';
import { chartPoints, summarize, type MetricsSampler } from './metrics.ts';
import { buildOpenApi } from './openapi.ts';
import {
  CreateSourceBody,
  DestinationUpdateBody,
  DestinationWriteBody,
  LIST_LIMITS,
  ReplayBody,
  RotateKeyBody,
  RouteUpdateBody,
  RouteWriteBody,
  VersionBody,
} from './schemas.ts';

/**
 * The Pilot API under `/api`: JSON over the control plane (sources, destinations, routes),
 * dead letters, deploys, metrics, alerts and the live event debugger. Every route but the
 * OpenAPI document wants `Authorization: Bearer <admin token>`.
 */

export interface PilotApiDeps {
  adminToken: string;
  controlPlane: ControlPlaneSource;
  /** The control plane's versions and the dead letters: Postgres, or the embedded SQLite store. */
  store: Store;
  /** Absent: the deploy list is empty. */
  deploys: DeployLog | undefined;
  policies: readonly ImagePolicy[];
  sampler: MetricsSampler;
  sampleMs: number;
  alerts: AlertMonitor;
  alertWebhookConfigured: boolean;
  events: EventBuffer;
  debuggerStatus: () => { group: string | null; ready: boolean; failure: string | undefined };
  demo: DemoReceiver;
  /** A live stream ends after this long (the client reconnects); see PilotConfig.streamMaxMs. */
  streamMaxMs: number;
  logger: Logger;
  /** Refused webhooks of the process (registry, git, demo), shown at /api/webhooks/refusals. */
  refusals: RefusalLog;
  /** Logs and counts an unexpected 5xx (core/error-boundary.ts). */
  unexpectedError: UnexpectedErrorHandler;
  /** Puts a router dead letter back on the raw topic: its raw bytes, its original key. */
  republish: (key: string | null, value: Buffer) => Promise<void>;
  /** For tests: how sink dead letters are replayed. */
  replay?: (store: Store, snapshot: ControlPlaneSnapshot, opts: { destinationId?: string; ids?: number[]; limit?: number }) => Promise<ReplayResult>;
}

export interface PilotApi {
  routes: Hono;
  /** Ends every open live stream now (clients reconnect); call before the server drains. */
  closeStreams(): void;
}

/** Shown instead of a secret; sent back unchanged, it means "keep the stored value". */
export const REDACTED = '[redacted]';

const SECRET_FIELD = /secret|token|password|passwd|api_?key|webhookurl|credential|authorization|private/i;

/**
 * A destination as the API shows it: secret-looking settings, every header value and URL
 * passwords become "[redacted]".
 *
 * @example redactDestination({ id: 'a', type: 'amplitude', apiKey: 'k' }); // { id: 'a', type: 'amplitude', apiKey: '[redacted]' }
 */
export function redactDestination(d: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(d)) {
    if (k === 'headers' && v && typeof v === 'object' && !Array.isArray(v)) {
      out[k] = Object.fromEntries(Object.keys(v).map((h) => [h, REDACTED]));
    } else if (SECRET_FIELD.test(k) && typeof v === 'string' && v !== '') {
      // Strings only: a flag like allowPrivateNetwork is no secret.
      out[k] = REDACTED;
    } else if (typeof v === 'string' && /^https?:\/\//.test(v)) {
      out[k] = redactUrlPassword(v);
    } else out[k] = v;
  }
  return out;
}

function redactUrlPassword(url: string): string {
  try {
    const u = new URL(url);
    if (!u.password) return url;
    u.password = REDACTED;
    return u.toString();
  } catch {
    return url;
  }
}

/**
 * Puts stored secrets back where an update sent "[redacted]" (as shown by GET), so a
 * client can edit one field of a destination without knowing its secrets.
 *
 * @example restoreRedacted({ apiKey: '[redacted]', region: 'eu' }, { apiKey: 'k', region: 'us' }); // { apiKey: 'k', region: 'eu' }
 */
export function restoreRedacted(incoming: Record<string, unknown>, stored: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(incoming)) {
    const before = stored?.[k];
    if (v === REDACTED) {
      if (before === undefined) throw new InputError('invalid_request', `${k} is "${REDACTED}" but there is no stored value to keep`, 400);
      out[k] = before;
    } else if (v && typeof v === 'object' && !Array.isArray(v) && before && typeof before === 'object' && !Array.isArray(before)) {
      out[k] = restoreRedacted(v as Record<string, unknown>, before as Record<string, unknown>);
    } else if (typeof v === 'string' && typeof before === 'string' && v.includes(`:${encodeURIComponent(REDACTED)}@`)) {
      // A URL whose password was shown redacted: keep the stored one.
      try {
        const u = new URL(v);
        u.password = new URL(before).password;
        out[k] = u.toString();
      } catch {
        out[k] = v;
      }
    } else out[k] = v;
  }
  return out;
}

/** A key's public name: the start of its hash. Enough to tell keys apart, useless to an attacker. */

function sourceView(s: SourceConfig) {
  return {
    id: s.id,
    ...(s.name !== undefined ? { name: s.name } : {}),
    enabled: s.enabled,
    allowedOrigins: s.allowedOrigins,
    ...(s.rateLimit ? { rateLimit: s.rateLimit } : {}),
    // Plain keys only exist in a config file without a database; they are never shown either.
    keys: [...new Set([...s.writeKeyHashes, ...s.writeKeys.map(hashWriteKeySync)])].map((h) => ({ id: keyIdOf(h) })),
  };
}

function newWriteKey(): string {
  return `wk_${randomBytes(24).toString('base64url')}`;
}

/**
 * The dotted path of the first string or key in `value` that holds U+0000, or undefined.
 * Iterative: a body may nest deeper than the stack.
 */
function nulPath(value: unknown): string | undefined {
  const stack: Array<[unknown, string]> = [[value, '']];
  for (let next = stack.pop(); next; next = stack.pop()) {
    const [v, path] = next;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return path;
    } else if (v !== null && typeof v === 'object') {
      for (const [k, child] of Object.entries(v)) {
        const at = path ? `${path}.${k}` : k;
        if (k.includes('\u0000')) return at;
        stack.push([child, at]);
      }
    }
  }
  return undefined;
}

/** Parses a JSON body (an empty one counts as `{}`) with `schema`; 400 with the issues otherwise (a U+0000 anywhere, too). */
async function body<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  const text = await c.req.text();
  let raw: unknown = {};
  if (text.trim() !== '') {
    try {
      raw = JSON.parse(text);
    } catch {
      throw new InputError('invalid_json', 'the body is not valid JSON', 400);
    }
  }
  const nul = nulPath(raw);
  if (nul !== undefined) {
    const message = 'U+0000 cannot be stored: PostgreSQL refuses it in JSON';
    throw new InputError('invalid_request', `${nul || '(body)'}: ${message}`, 400, { issues: [{ path: nul, message }] });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({
      path: i.path.map(String).join('.'),
      message: i.code === 'unrecognized_keys' ? `unknown key(s) ${i.keys.join(', ')}` : i.message,
    }));
    throw new InputError('invalid_request', issues.map((i) => `${i.path || '(body)'}: ${i.message}`).join('; '), 400, { issues });
  }
  return parsed.data;
}

/** An integer query parameter; absent is undefined, anything but an integer in range (even empty) a 400. */
function intQuery(c: Context, name: string, opts: { min?: number; max?: number } = {}): number | undefined {
  const raw = c.req.query(name);
  if (raw === undefined) return undefined;
  const n = raw.trim() === '' ? NaN : Number(raw);
  if (!Number.isSafeInteger(n) || n < (opts.min ?? 0) || n > (opts.max ?? Number.MAX_SAFE_INTEGER)) {
    throw new InputError('invalid_request', `${name} must be an integer between ${opts.min ?? 0} and ${opts.max ?? Number.MAX_SAFE_INTEGER}`, 400);
  }
  return n;
}

/** A query flag: `true` or `false`, absent is `false`; anything else (even empty) a 400, not silently `false`. */
function flagQuery(c: Context, name: string): boolean {
  const raw = c.req.query(name);
  if (raw === undefined || raw === 'false') return false;
  if (raw === 'true') return true;
  throw new InputError('invalid_request', `${name} must be true or false`, 400);
}

function idParam(c: Context, name = 'id'): number {
  const n = Number(c.req.param(name));
  if (!Number.isSafeInteger(n) || n < 1) throw new InputError('not_found', `no such ${name}: ${c.req.param(name)}`, 404);
  return n;
}

/** Checks a destination's own settings with its sink's schema, as the sinks will. */
function checkDestination(d: DestinationConfig): void {
  const module = DESTINATIONS.get(d.type);
  if (!module) throw new InputError('invalid_request', `no destination type "${d.type}" (known: ${[...DESTINATIONS.keys()].join(', ')})`, 400);
  const parsed = module.configSchema.safeParse(destinationSettings(d));
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({ path: ['destination', ...i.path.map(String)].join('.'), message: i.message }));
    throw new InputError('invalid_request', issues.map((i) => `${i.path}: ${i.message}`).join('; '), 400, { issues });
  }
}

/**
 * @example
 *   const api = createPilotApi({ adminToken, controlPlane, store, … });
 *   app.route('/', api.routes);
 */
export function createPilotApi(deps: PilotApiDeps): PilotApi {
  const log = deps.logger;
  const app = new Hono();
  const streams = new Set<() => void>();
  const replay = deps.replay ?? replayToDestinations;
  const openapi = buildOpenApi();

  // A client's error is answered with its code; anything else (a store down, a bug) is
  // logged and answered 500 `internal`, without its message, which may name internals.
  app.onError((err, c) => {
    if (err instanceof OrreryError && err.status < 500) return errorResponse(c, err);
    deps.unexpectedError(err, c);
    return errorResponse(c, undefined);
  });

  // The document holds no data, so tools may read it without the token.
  app.get('/api/openapi.json', (c) => c.json(openapi));
  app.use('/api/*', bodyLimit({ maxSize: 512 * 1024, onError: (c) => errorResponse(c, new InputError('payload_too_large', 'at most 512 KB')) }));
  app.use('/api/*', bearerAuth(deps.adminToken, 'orrery-pilot'));
  app.use('/api/*', async (c, next) => {
    await next();
    // Answers carry configuration and events: never cached anywhere.
    c.header('Cache-Control', 'no-store');
  });

  // ---- control plane --------------------------------------------------------------------

  /** Our own writes are visible at once, before the NOTIFY reload reaches controlPlane. */
  let written: ControlPlaneSnapshot | undefined;
  const latest = (): ControlPlaneSnapshot => {
    const current = deps.controlPlane.current();
    return written && written.version > current.version ? written : current;
  };

  async function write(note: string, expectedVersion: number | undefined, mutate: (doc: ControlPlaneConfig) => ControlPlaneConfig): Promise<ControlPlaneSnapshot> {
    const snapshot = await updateControlPlane(deps.store, mutate, { ...(expectedVersion !== undefined ? { expectedVersion } : {}), note: `pilot: ${note}` });
    if (!written || snapshot.version > written.version) written = snapshot;
    log.info({ version: snapshot.version, change: note }, 'control plane changed through Pilot');
    return snapshot;
  }

  function findSource(doc: ControlPlaneConfig, id: string): SourceConfig {
    const s = doc.sources.find((x) => x.id === id);
    if (!s) throw new InputError('not_found', `no source "${id}"`, 404);
    return s;
  }

  app.get('/api/config', (c) => {
    const s = latest();
    return c.json({
      version: s.version,
      sources: s.sources.map(sourceView),
      destinations: s.destinations.map((d) => redactDestination(d)),
      routes: s.routes,
    });
  });

  app.get('/api/sources', (c) => {
    const s = latest();
    return c.json({ version: s.version, sources: s.sources.map(sourceView) });
  });

  app.post('/api/sources', async (c) => {
    const { expectedVersion, ...input } = await body(c, CreateSourceBody);
    const writeKey = newWriteKey();
    const hash = await hashWriteKey(writeKey);
    const snap = await write(`create source ${input.id}`, expectedVersion, (doc) => {
      if (doc.sources.some((s) => s.id === input.id)) throw new InputError('source_exists', `there is a source "${input.id}" already`, 409);
      // Only the hash goes into the document: the key itself never reaches the database.
      return { ...doc, sources: [...doc.sources, { ...input, writeKeys: [], writeKeyHashes: [hash] }] };
    });
    return c.json({ version: snap.version, source: sourceView(findSource(snap, input.id)), writeKey, keyId: keyIdOf(hash) }, 201);
  });

  app.post('/api/sources/:id/rotate-key', async (c) => {
    const id = c.req.param('id');
    const { expectedVersion, removeOld } = await body(c, RotateKeyBody);
    const writeKey = newWriteKey();
    const hash = await hashWriteKey(writeKey);
    const snap = await write(`rotate key of source ${id}${removeOld ? ' (old keys removed)' : ''}`, expectedVersion, (doc) => {
      const s = findSource(doc, id);
      const kept = removeOld ? [] : [...s.writeKeyHashes];
      return { ...doc, sources: doc.sources.map((x) => (x.id === id ? { ...x, writeKeys: removeOld ? [] : x.writeKeys, writeKeyHashes: [...kept, hash] } : x)) };
    });
    return c.json({ version: snap.version, source: sourceView(findSource(snap, id)), writeKey, keyId: keyIdOf(hash) });
  });

  app.delete('/api/sources/:id/keys/:keyId', async (c) => {
    const { id, keyId } = c.req.param();
    const expectedVersion = intQuery(c, 'expectedVersion');
    const snap = await write(`remove key ${keyId} of source ${id}`, expectedVersion, (doc) => {
      const s = findSource(doc, id);
      const remaining = s.writeKeyHashes.filter((h) => keyIdOf(h) !== keyId);
      if (remaining.length === s.writeKeyHashes.length) throw new InputError('not_found', `source "${id}" has no key ${keyId}`, 404);
      if (remaining.length + s.writeKeys.length === 0) throw new InputError('last_key', `that is the last key of source "${id}": rotate first, or disable the source`, 409);
      return { ...doc, sources: doc.sources.map((x) => (x.id === id ? { ...x, writeKeyHashes: remaining } : x)) };
    });
    return c.json({ version: snap.version, source: sourceView(findSource(snap, id)) });
  });

  for (const [action, enabled] of [['enable', true], ['disable', false]] as const) {
    app.post(`/api/sources/:id/${action}`, async (c) => {
      const id = c.req.param('id');
      const { expectedVersion } = await body(c, VersionBody);
      const snap = await write(`${action} source ${id}`, expectedVersion, (doc) => {
        findSource(doc, id);
        return { ...doc, sources: doc.sources.map((x) => (x.id === id ? { ...x, enabled } : x)) };
      });
      return c.json({ version: snap.version, source: sourceView(findSource(snap, id)) });
    });
  }

  app.get('/api/destinations', (c) => {
    const s = latest();
    return c.json({ version: s.version, destinations: s.destinations.map((d) => redactDestination(d)) });
  });

  app.post('/api/destinations', async (c) => {
    const { destination, expectedVersion } = await body(c, DestinationWriteBody);
    checkDestination(destination);
    const snap = await write(`create destination ${destination.id}`, expectedVersion, (doc) => {
      if (doc.destinations.some((d) => d.id === destination.id)) throw new InputError('destination_exists', `there is a destination "${destination.id}" already`, 409);
      return { ...doc, destinations: [...doc.destinations, destination] };
    });
    return c.json({ version: snap.version, destination: redactDestination(snap.destinations.find((d) => d.id === destination.id)!) }, 201);
  });

  app.put('/api/destinations/:id', async (c) => {
    const id = c.req.param('id');
    const { destination, expectedVersion } = await body(c, DestinationUpdateBody);
    if (destination.id !== undefined && destination.id !== id) throw new InputError('invalid_request', `the body names destination "${destination.id}", the path "${id}": ids cannot change`, 400);
    const snap = await write(`update destination ${id}`, expectedVersion, (doc) => {
      const stored = doc.destinations.find((d) => d.id === id);
      if (!stored) throw new InputError('not_found', `no destination "${id}"`, 404);
      const next = { ...restoreRedacted(destination, stored), id } as DestinationConfig;
      checkDestination(next);
      return { ...doc, destinations: doc.destinations.map((d) => (d.id === id ? next : d)) };
    });
    return c.json({ version: snap.version, destination: redactDestination(snap.destinations.find((d) => d.id === id)!) });
  });

  app.delete('/api/destinations/:id', async (c) => {
    const id = c.req.param('id');
    const expectedVersion = intQuery(c, 'expectedVersion');
    const cascade = flagQuery(c, 'cascade');
    const snap = await write(`delete destination ${id}${cascade ? ' and its routes' : ''}`, expectedVersion, (doc) => {
      if (!doc.destinations.some((d) => d.id === id)) throw new InputError('not_found', `no destination "${id}"`, 404);
      const routes = doc.routes.filter((r) => r.destination === id);
      if (routes.length > 0 && !cascade) {
        throw new InputError('destination_in_use', `routes from ${routes.map((r) => r.source).join(', ')} lead to "${id}": delete them first, or pass cascade=true`, 409);
      }
      return { ...doc, destinations: doc.destinations.filter((d) => d.id !== id), routes: doc.routes.filter((r) => r.destination !== id) };
    });
    return c.json({ version: snap.version, deleted: id });
  });

  // A route is named by its source and destination: there is one route per pair.
  app.get('/api/routes', (c) => {
    const s = latest();
    return c.json({ version: s.version, routes: s.routes });
  });

  app.post('/api/routes', async (c) => {
    const { route, expectedVersion } = await body(c, RouteWriteBody);
    const snap = await write(`create route ${route.source} → ${route.destination}`, expectedVersion, (doc) => {
      if (doc.routes.some((r) => r.source === route.source && r.destination === route.destination)) {
        throw new InputError('route_exists', `there is a route from "${route.source}" to "${route.destination}" already: update it`, 409);
      }
      // A well-formed route to something not (yet) there conflicts with the current state: 409, as destination_in_use.
      if (!doc.sources.some((s) => s.id === route.source)) throw new InputError('no_such_source', `there is no source "${route.source}": create it first`, 409);
      if (!doc.destinations.some((d) => d.id === route.destination)) {
        throw new InputError('no_such_destination', `there is no destination "${route.destination}": create it first`, 409);
      }
      return { ...doc, routes: [...doc.routes, route] };
    });
    return c.json({ version: snap.version, route }, 201);
  });

  app.put('/api/routes/:source/:destination', async (c) => {
    const { source, destination } = c.req.param();
    const { route, expectedVersion } = await body(c, RouteUpdateBody);
    const next = { ...route, source, destination };
    const snap = await write(`update route ${source} → ${destination}`, expectedVersion, (doc) => {
      if (!doc.routes.some((r) => r.source === source && r.destination === destination)) throw new InputError('not_found', `no route from "${source}" to "${destination}"`, 404);
      // A config file may hold the same pair twice; the API leaves one.
      let placed = false;
      const routes = doc.routes.flatMap((r) => {
        if (r.source !== source || r.destination !== destination) return [r];
        if (placed) return [];
        placed = true;
        return [next];
      });
      return { ...doc, routes };
    });
    return c.json({ version: snap.version, route: next });
  });

  app.delete('/api/routes/:source/:destination', async (c) => {
    const { source, destination } = c.req.param();
    const expectedVersion = intQuery(c, 'expectedVersion');
    const snap = await write(`delete route ${source} → ${destination}`, expectedVersion, (doc) => {
      if (!doc.routes.some((r) => r.source === source && r.destination === destination)) throw new InputError('not_found', `no route from "${source}" to "${destination}"`, 404);
      return { ...doc, routes: doc.routes.filter((r) => r.source !== source || r.destination !== destination) };
    });
    return c.json({ version: snap.version, deleted: { source, destination } });
  });

  // ---- dead letters ----------------------------------------------------------------------


  const stageQuery = (c: Context): DeadLetterFilter['stage'] => {
    const stage = c.req.query('stage') || undefined;
    if (stage !== undefined && stage !== 'router' && stage !== 'sink') throw new InputError('invalid_request', 'stage is router or sink', 400);
    return stage;
  };

  async function replayLetters(store: Store, filter: DeadLetterFilter): Promise<ReplayResult> {
    return replayAllDeadLetters(store, filter, { replaySinks: (opts) => replay(store, latest(), opts), republish: deps.republish });
  }

  app.get('/api/dead-letters', async (c) => {
    const store = deps.store;
    const deadLetters = await listAllDeadLetters(store, {
      stage: stageQuery(c),
      destinationId: c.req.query('destination') || undefined,
      includeReplayed: flagQuery(c, 'includeReplayed'),
      limit: intQuery(c, 'limit', { min: 1, max: LIST_LIMITS.deadLetters }) ?? 100,
    });
    return c.json({ deadLetters, pending: await pendingCounts(store), pendingByStage: await pendingByStage(store) });
  });

  // Numeric ids only, so that /api/dead-letters/replay is not a GET of a letter named "replay" (405, Allow: POST).
  app.get('/api/dead-letters/:id{[0-9]+}', async (c) => {
    const letter = await getAnyDeadLetter(deps.store, idParam(c));
    if (!letter) throw new InputError('not_found', `no dead letter ${c.req.param('id')}`, 404);
    return c.json(letter);
  });

  app.post('/api/dead-letters/replay', async (c) => {
    const store = deps.store;
    const { stage, destinationId, ids, limit } = await body(c, ReplayBody);
    const result = await replayLetters(store, { stage, destinationId, ids, limit });
    log.info({ replayed: result.replayed.length, failed: result.failed.length, destinationId, stage }, 'dead letters replayed through Pilot');
    return c.json(result);
  });

  app.post('/api/dead-letters/:id{[0-9]+}/replay', async (c) => {
    const store = deps.store;
    const id = idParam(c);
    const letter = await getAnyDeadLetter(store, id);
    if (!letter) throw new InputError('not_found', `no dead letter ${id}`, 404);
    return c.json(await replayLetters(store, { stage: letter.stage, ids: [id] }));
  });

  // ---- deploys and image policies ---------------------------------------------------------

  app.get('/api/deploys', async (c) => {
    const limit = intQuery(c, 'limit', { min: 1, max: LIST_LIMITS.deploys }) ?? 100;
    const policy = c.req.query('policy') || undefined;
    const deploys = deps.deploys ? await deps.deploys.list({ limit, ...(policy ? { policy } : {}) }) : [];
    return c.json({ deploys, available: deps.deploys !== undefined });
  });

  app.get('/api/deploys/:id{[0-9]+}', async (c) => {
    const id = idParam(c);
    const deploy = await deps.deploys?.get(id);
    if (!deploy) throw new InputError('not_found', `no deploy ${id}`, 404);
    return c.json(deploy);
  });

  app.get('/api/image-policies', (c) => c.json({ policies: deps.policies }));

  app.get('/api/webhooks/refusals', (c) => c.json({ windowMs: deps.refusals.windowMs, refusals: deps.refusals.list() }));

  // ---- metrics and alerts -----------------------------------------------------------------

  app.get('/api/metrics/summary', async (c) => {
    const summary = summarize(await deps.sampler.peek(), latest().destinations.map((d) => d.id));
    return c.json({ ...summary, deadLettersPending: await pendingCounts(deps.store) });
  });

  app.get('/api/metrics/series', (c) => c.json({ everyMs: deps.sampleMs, points: chartPoints(deps.sampler.samples()) }));

  app.get('/api/alerts', (c) =>
    c.json({ webhookConfigured: deps.alertWebhookConfigured, rules: deps.alerts.rules(), active: deps.alerts.active(), recent: deps.alerts.recent() }),
  );

  // ---- live debugger and demo deliveries ----------------------------------------------------

  app.get('/api/debugger/status', (c) => c.json({ ...deps.debuggerStatus(), sources: deps.events.sources() }));

  app.get('/api/debugger/events', (c) => {
    const sourceId = c.req.query('source') || undefined;
    const limit = intQuery(c, 'limit', { min: 1, max: LIST_LIMITS.debuggerEvents }) ?? LIST_LIMITS.debuggerEvents;
    return c.json({ events: deps.events.list({ sourceId, limit }) });
  });

  app.get('/api/demo/deliveries', (c) => c.json({ deliveries: deps.demo.list() }));

  /**
   * Server-Sent Events: `event` (a DebugEvent, id = its seq) and `delivered` (a demo-webhook
   * delivery) as they happen, after the backlog since the cursors `since` and
   * `deliveredSince`. The stream ends with `bye` after streamMaxMs, and the client
   * reconnects with its cursors, so nothing is missed in between.
   */
  app.get('/api/debugger/stream', (c) => {
    const sourceId = c.req.query('source') || undefined;
    const since = intQuery(c, 'since') ?? 0;
    const deliveredSince = intQuery(c, 'deliveredSince') ?? 0;
    c.header('X-Accel-Buffering', 'no');
    return streamSSE(c, async (stream) => {
      const queue: SSEMessage[] = [];
      let wake: (() => void) | undefined;
      let done = false;
      const finish = () => {
        done = true;
        wake?.();
      };
      const push = (m: SSEMessage) => {
        // A client that cannot keep up loses the oldest events, never the server's memory.
        if (queue.length >= 1_000) queue.shift();
        queue.push(m);
        wake?.();
      };
      // Backlog then subscription, in one synchronous stretch: no event falls in between.
      for (const e of deps.events.list({ sourceId, afterSeq: since, limit: 1_000 })) queue.push({ event: 'event', id: String(e.seq), data: JSON.stringify(e) });
      for (const d of deps.demo.list(deliveredSince)) queue.push({ event: 'delivered', data: JSON.stringify(d) });
      const unsubscribe = [
        deps.events.subscribe((e) => {
          if (sourceId === undefined || e.sourceId === sourceId) push({ event: 'event', id: String(e.seq), data: JSON.stringify(e) });
        }),
        deps.demo.subscribe((d) => push({ event: 'delivered', data: JSON.stringify(d) })),
      ];
      streams.add(finish);
      stream.onAbort(finish);
      const ending = setTimeout(finish, deps.streamMaxMs);
      // Proxies close quiet connections; a comment line now and then keeps this one open.
      const ping = setInterval(() => void stream.write(': ping\n\n'), 10_000);
      try {
        await stream.writeSSE({ event: 'hello', data: JSON.stringify(deps.debuggerStatus()), retry: 1_000 });
        while (!done) {
          while (queue.length > 0 && !stream.aborted) await stream.writeSSE(queue.shift()!);
          if (done || stream.aborted) break;
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
        if (!stream.aborted) await stream.writeSSE({ event: 'bye', data: 'reconnect' });
      } finally {
        clearTimeout(ending);
        clearInterval(ping);
        for (const u of unsubscribe) u();
        streams.delete(finish);
      }
    });
  });

  return {
    routes: app,
    closeStreams() {
      for (const finish of [...streams]) finish();
    },
  };
}
