/**
 * Google Analytics 4, through the Measurement Protocol.
 *
 * Followed: Google's "Send Measurement Protocol events to Google Analytics"
 * (developers.google.com/analytics/devguides/collection/protocol/ga4/sending-events), its
 * reference and limits sections, and "Event collection limits" (support.google.com/analytics
 * /answer/9267744):
 * - POST https://www.google-analytics.com/mp/collect?measurement_id=<G-…>&api_secret=<secret>,
 *   JSON `{ client_id, user_id?, timestamp_micros?, events: [{ name, params }] }`. A request
 *   carries one client_id and one user_id, so deliver() sends one request per client (and
 *   user) in the batch, in the order each client first appears, each client's events in
 *   their order.
 * - Limits: 25 events per request; body under 130 kB; event names at most 40 characters of
 *   [A-Za-z0-9_] starting with a letter; 25 params per event; param names 40 characters;
 *   param values 100 characters (page_location 1000, page_referrer 420, page_title 300);
 *   user_id at most 256 characters; events may be backdated by 72 hours at most.
 *   Names are sanitised (`Order Completed` → `order_completed`), longer values cut, params
 *   past the 25th dropped, nested objects dropped (an `items` array of objects is kept,
 *   with scalar fields only, as GA's ecommerce events take it).
 * - Each event has its own `timestamp_micros` (taken before the request-level one, which
 *   is set to the first event's).
 * - /mp/collect answers 2xx even to malformed events and drops them silently (the
 *   /debug/mp/collect validation endpoint is the only way to see why); nothing here
 *   pretends otherwise: a 2xx is delivered. Reserved event names (session_start,
 *   first_visit, screen_view…) and the `_`, `ga_`, `google_`, `firebase_` prefixes are dropped
 *   by GA the same way. The rare non-2xx answers (429, 5xx) go through the shared HTTP
 *   classification.
 * - GA has no deduplication: when a later request of a batch fails, the worker's retry
 *   resends the earlier ones too, so a failing batch can count some events twice.
 *
 * Segment → GA4 mapping:
 * - client_id: `integrations['Google Analytics 4'].clientId` when the client sent one (the
 *   gtag client id), else anonymousId, else userId (GA requires a client_id; a user's events
 *   then count as one client). user_id: userId.
 * - track → name = sanitised event, params = scalar properties.
 * - page → `page_view` with page_location (context.page.url or properties.url), page_title,
 *   page_referrer, then the other properties.
 * - screen, identify, group, alias → not sent: `screen_view` is a reserved name for the
 *   Measurement Protocol, and GA4 has no identify/group/alias events.
 */
import { z } from 'zod';
import type { Envelope } from '../../../core/envelope.ts';
import { send } from '../http.ts';
import { DeliveryError, type DestinationModule } from '../types.ts';

const ENDPOINT = 'https://www.google-analytics.com/mp/collect';

const MAX_EVENTS_PER_REQUEST = 25;
const MAX_REQUEST_BYTES = 130_000;
const MAX_PARAMS = 25;
const MAX_NAME = 40;
const MAX_VALUE = 100;
const LONG_VALUES: Readonly<Record<string, number>> = { page_location: 1000, page_referrer: 420, page_title: 300 };

const Ga4Config = z.strictObject({
  /** The web stream's measurement id, `G-` then letters and digits (not the stream id). */
  measurementId: z.string().regex(/^G-[A-Z0-9]+$/, 'expected a measurement id like G-XXXXXXXXXX'),
  /** A Measurement Protocol API secret of that stream. */
  apiSecret: z.string().min(1),
});
export type Ga4Config = z.infer<typeof Ga4Config>;

type Json = Record<string, unknown>;
type Scalar = string | number;

/** One event in the Measurement Protocol's format. */
export interface Ga4Event {
  name: string;
  params: Record<string, Scalar | Array<Record<string, Scalar>>>;
  timestamp_micros: number;
}

/** One Measurement Protocol request body. */
export interface Ga4Request {
  client_id: string;
  user_id?: string;
  timestamp_micros: number;
  events: Ga4Event[];
}

const obj = (v: unknown): Json | undefined =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * A GA4 event or parameter name from free text: lower case, runs of other characters as one
 * `_`, no leading or trailing `_`, starting with a letter, at most 40 characters. Undefined
 * when nothing usable is left.
 */
export function ga4Name(raw: string): string | undefined {
  let name = raw
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '');
  if (name === '') return undefined;
  if (!/^[a-z]/.test(name)) name = `e_${name}`;
  return name.slice(0, MAX_NAME).replace(/_+$/, '');
}

function scalar(key: string, v: unknown): Scalar | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return v.slice(0, LONG_VALUES[key] ?? MAX_VALUE);
  return undefined;
}

function items(v: unknown): Array<Record<string, Scalar>> | undefined {
  if (!Array.isArray(v)) return undefined;
  const out = v.flatMap((item) => {
    const o = obj(item);
    if (!o) return [];
    const fields: Record<string, Scalar> = {};
    for (const [k, raw] of Object.entries(o)) {
      const name = ga4Name(k);
      const value = name === undefined ? undefined : scalar(name, raw);
      if (name !== undefined && value !== undefined) fields[name] = value;
    }
    return [fields];
  });
  return out.length > 0 ? out : undefined;
}

/** Params from (key, value) pairs, first come first kept, within GA's count and size limits. */
function params(entries: Array<[string, unknown]>): Ga4Event['params'] {
  const out: Ga4Event['params'] = {};
  let count = 0;
  for (const [key, raw] of entries) {
    if (count === MAX_PARAMS) break;
    const name = ga4Name(key);
    if (name === undefined || name in out) continue;
    const value = name === 'items' ? items(raw) : scalar(name, raw);
    if (value === undefined) continue;
    out[name] = value;
    count++;
  }
  return out;
}

/** The GA4 event for one Segment message, or undefined for calls GA4 does not take. */
export function toGa4Event(env: Envelope): Ga4Event | undefined {
  const timestamp_micros = Date.parse(env.timestamp) * 1000;
  const props = Object.entries(env.properties ?? {});
  if (env.type === 'track') {
    const name = env.event ? ga4Name(env.event) : undefined;
    return name ? { name, params: params(props), timestamp_micros } : undefined;
  }
  if (env.type === 'page') {
    const page = obj(obj(env.context)?.['page']) ?? {};
    const p = env.properties ?? {};
    const first: Array<[string, unknown]> = [
      ['page_location', str(page['url']) ?? str(p['url'])],
      ['page_title', str(page['title']) ?? str(p['title']) ?? env.name],
      ['page_referrer', str(page['referrer']) ?? str(p['referrer'])],
    ];
    return { name: 'page_view', params: params([...first, ...props]), timestamp_micros };
  }
  return undefined;
}

function clientId(env: Envelope): string | undefined {
  return str(obj(env.integrations?.['Google Analytics 4'])?.['clientId']) ?? env.anonymousId ?? env.userId;
}

/**
 * The requests a batch becomes: one per run of a client's events with the same user_id and
 * at most 25 events. A client's requests are created, and so sent, in the order of its
 * events; a new request starts when its user_id changes (one identifies mid-batch) or the
 * open one is full.
 */
export function toGa4Requests(events: Envelope[]): Ga4Request[] {
  const requests: Ga4Request[] = [];
  const open = new Map<string, Ga4Request>();
  for (const env of events) {
    const event = toGa4Event(env);
    const client = clientId(env);
    if (event === undefined || client === undefined) continue;
    let request = open.get(client);
    if (request === undefined || request.user_id !== env.userId || request.events.length === MAX_EVENTS_PER_REQUEST) {
      request = { client_id: client, user_id: env.userId, timestamp_micros: event.timestamp_micros, events: [] };
      open.set(client, request);
      requests.push(request);
    }
    request.events.push(event);
  }
  return requests;
}

const encoder = new TextEncoder();

/** Splits a request whose body would pass 130 kB; a single event too big for it is refused. */
function fit(request: Ga4Request): Ga4Request[] {
  const body = (r: Ga4Request) => JSON.stringify(r);
  if (encoder.encode(body(request)).byteLength <= MAX_REQUEST_BYTES) return [request];
  if (request.events.length === 1) {
    throw new DeliveryError(`a GA4 event is over the ${MAX_REQUEST_BYTES}-byte request limit`, { retriable: false });
  }
  const half = Math.ceil(request.events.length / 2);
  const [a, b] = [request.events.slice(0, half), request.events.slice(half)];
  return [
    ...fit({ ...request, events: a, timestamp_micros: a[0]?.timestamp_micros ?? request.timestamp_micros }),
    ...fit({ ...request, events: b, timestamp_micros: b[0]?.timestamp_micros ?? request.timestamp_micros }),
  ];
}

/** Google Analytics 4 (Measurement Protocol). */
const ga4: DestinationModule<Ga4Config> = {
  type: 'ga4',
  displayName: 'Google Analytics 4',
  configSchema: Ga4Config,
  maxBatchSize: MAX_EVENTS_PER_REQUEST,

  async deliver(events, config, ctx) {
    const requests = toGa4Requests(events).flatMap(fit);
    const url = `${ENDPOINT}?measurement_id=${encodeURIComponent(config.measurementId)}&api_secret=${encodeURIComponent(config.apiSecret)}`;
    for (const request of requests) {
      await send(
        ctx.fetch,
        url,
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request), signal: ctx.signal },
        ctx.now(),
        'Google Analytics 4',
      );
    }
  },
};

export default ga4;
