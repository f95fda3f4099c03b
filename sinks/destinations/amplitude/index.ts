/**
 * Amplitude, through the HTTP V2 API.
 *
 * Followed: Amplitude's "HTTP V2 API" reference (amplitude.com/docs/apis/analytics/http-v2)
 * and "Batch and retry HTTP V2 API requests" (…/http-api-batching-retries):
 * - POST https://api2.amplitude.com/2/httpapi, or https://api.eu.amplitude.com/2/httpapi for
 *   EU data residency; JSON `{ api_key, events, options? }`; the key travels in the body.
 * - At most 2000 events and under 1 MB per request (413 otherwise). Starter plans are asked
 *   to keep to 10 events per request; that is advice, not a rejection, so the batch size
 *   follows the hard limit. Per user or device at most 30 events per second (older pages
 *   say 10): above that Amplitude answers 429, and asks senders to pause that user or device
 *   for 30 s, which is what a 429 without Retry-After is given here.
 * - 400 rejects the whole request (bad field, missing id, ids under `min_id_length`), 413 too
 *   large, 429 throttled, 5xx transient; insert_id dedupes for 7 days, so resending a batch
 *   (whole or after a partial split failure) creates no duplicates.
 * - user_id/device_id must be at least 5 characters unless `options.min_id_length` says
 *   otherwise; Segment accepts any non-empty id, so every request sends `min_id_length: 1`.
 *
 * Segment → Amplitude mapping:
 * - track → event_type = event; revenue/price/quantity/productId/revenueType lifted from
 *   properties as Amplitude's revenue fields.
 * - page → `Viewed <name> Page`, or `Loaded a Page` without a name; screen → `Viewed <name>
 *   Screen` / `Loaded a Screen` (the names Segment's own Amplitude integration uses).
 * - identify → `$identify` with `user_properties: { $set: traits }` (skipped without traits:
 *   any event carrying both ids already links them). The `$identify`/`$groupidentify` event
 *   types are what Amplitude's own SDKs send to this endpoint.
 * - group → `$identify` with `groups: { <groupType>: groupId }` and the same pair in
 *   `$set` (puts the user in the group), then, when the call has traits, `$groupidentify`
 *   with `group_properties: { $set: traits }` (insert_id `<messageId>:group`).
 * - alias → not sent: HTTP V2 has no aliasing (that is the separate User Mapping API).
 * - Every event: user_id = userId, device_id = anonymousId, time = timestamp in ms,
 *   insert_id = messageId, ip and device/os/location/app fields from `context`,
 *   user_properties from `context.traits` on non-identify calls, session_id from
 *   `integrations.Amplitude.session_id` when the client sent one.
 */
import { z } from 'zod';
import type { Envelope } from '../../../core/envelope.ts';
import { send } from '../http.ts';
import { DeliveryError, type DeliveryContext, type DestinationModule } from '../types.ts';

const ENDPOINTS = {
  us: 'https://api2.amplitude.com/2/httpapi',
  eu: 'https://api.eu.amplitude.com/2/httpapi',
} as const;

const MAX_EVENTS_PER_REQUEST = 2000;
const MAX_REQUEST_BYTES = 1_000_000;
/** Amplitude's advice after throttling a user or device: wait 30 s. */
const THROTTLE_PAUSE_MS = 30_000;

const AmplitudeConfig = z.strictObject({
  apiKey: z.string().min(1),
  region: z.enum(['us', 'eu']).default('us'),
  /** The group type a Segment `group` call puts the user in (Amplitude groups are typed). */
  groupType: z.string().min(1).default('group'),
});
export type AmplitudeConfig = z.infer<typeof AmplitudeConfig>;

type Json = Record<string, unknown>;

/** One event in Amplitude's HTTP V2 format (only the keys this module sets). */
export interface AmplitudeEvent {
  event_type: string;
  user_id?: string;
  device_id?: string;
  time: number;
  insert_id: string;
  event_properties?: Json;
  user_properties?: Json;
  groups?: Record<string, string>;
  group_properties?: Json;
  session_id?: number;
  ip?: string;
  library?: string;
  app_version?: string;
  os_name?: string;
  os_version?: string;
  device_brand?: string;
  device_manufacturer?: string;
  device_model?: string;
  carrier?: string;
  country?: string;
  region?: string;
  city?: string;
  language?: string;
  location_lat?: number;
  location_lng?: number;
  idfa?: string;
  adid?: string;
  revenue?: number;
  price?: number;
  quantity?: number;
  productId?: string;
  revenueType?: string;
}

const obj = (v: unknown): Json | undefined =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const nonEmpty = (o: Json | undefined): Json | undefined => (o && Object.keys(o).length > 0 ? o : undefined);

/** Drops undefined values so the JSON carries only the keys that have something to say. */
function compact<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** The fields every Amplitude event takes from the envelope's ids and context. */
function common(env: Envelope): Omit<AmplitudeEvent, 'event_type' | 'insert_id'> {
  const ctx = obj(env.context) ?? {};
  const os = obj(ctx['os']);
  const device = obj(ctx['device']);
  const location = obj(ctx['location']);
  const library = obj(ctx['library']);
  const libName = str(library?.['name']);
  const libVersion = str(library?.['version']);
  const adId = str(device?.['advertisingId']);
  const osName = str(os?.['name']);
  const isIos = osName !== undefined && /ios|ipados/i.test(osName);
  const isAndroid = osName !== undefined && /android/i.test(osName);
  return {
    user_id: env.userId,
    device_id: env.anonymousId,
    time: Date.parse(env.timestamp),
    session_id: num(obj(env.integrations?.['Amplitude'])?.['session_id']),
    ip: str(ctx['ip']),
    library: libName && (libVersion ? `${libName}/${libVersion}` : libName),
    app_version: str(obj(ctx['app'])?.['version']),
    os_name: osName,
    os_version: str(os?.['version']),
    device_brand: str(device?.['brand']),
    device_manufacturer: str(device?.['manufacturer']),
    device_model: str(device?.['model']),
    carrier: str(obj(ctx['network'])?.['carrier']),
    country: str(location?.['country']),
    region: str(location?.['region']),
    city: str(location?.['city']),
    language: str(ctx['locale']),
    location_lat: num(location?.['latitude']),
    location_lng: num(location?.['longitude']),
    idfa: isIos ? adId : undefined,
    adid: isAndroid ? adId : undefined,
  };
}

function viewName(name: string | undefined, kind: 'Page' | 'Screen'): string {
  return name ? `Viewed ${name} ${kind}` : `Loaded a ${kind}`;
}

/**
 * The Amplitude events one Segment message becomes: none (alias, identify without traits),
 * one, or two (a group call with traits).
 */
export function toAmplitudeEvents(env: Envelope, config: Pick<AmplitudeConfig, 'groupType'>): AmplitudeEvent[] {
  const base = common(env);
  const contextTraits = nonEmpty(obj(obj(env.context)?.['traits']));
  const properties = nonEmpty(env.properties);
  const traits = nonEmpty(env.traits);
  switch (env.type) {
    case 'track': {
      if (!env.event) return [];
      const p = env.properties ?? {};
      return [
        compact({
          ...base,
          event_type: env.event,
          insert_id: env.messageId,
          event_properties: properties,
          user_properties: contextTraits,
          revenue: num(p['revenue']),
          price: num(p['price']),
          quantity: typeof p['quantity'] === 'number' && Number.isInteger(p['quantity']) ? p['quantity'] : undefined,
          productId: str(p['productId']) ?? str(p['product_id']),
          revenueType: str(p['revenueType']) ?? str(p['revenue_type']),
        }),
      ];
    }
    case 'page':
    case 'screen':
      return [
        compact({
          ...base,
          event_type: viewName(env.name, env.type === 'page' ? 'Page' : 'Screen'),
          insert_id: env.messageId,
          event_properties: properties,
          user_properties: contextTraits,
        }),
      ];
    case 'identify':
      if (!traits) return [];
      return [compact({ ...base, event_type: '$identify', insert_id: env.messageId, user_properties: { $set: traits } })];
    case 'group': {
      if (!env.groupId) return [];
      const groups = { [config.groupType]: env.groupId };
      const membership = compact({
        ...base,
        event_type: '$identify',
        insert_id: env.messageId,
        groups,
        user_properties: { $set: { [config.groupType]: env.groupId } },
      });
      if (!traits) return [membership];
      return [
        membership,
        compact({ ...base, event_type: '$groupidentify', insert_id: `${env.messageId}:group`, groups, group_properties: { $set: traits } }),
      ];
    }
    case 'alias':
      return [];
  }
}

const encoder = new TextEncoder();

/** Greedy split of serialised events into runs that fit the count and byte limits, in order. */
function pack(parts: string[], maxCount: number, maxBytes: number): string[][] {
  const out: string[][] = [];
  let current: string[] = [];
  let bytes = 0;
  for (const part of parts) {
    const size = encoder.encode(part).byteLength + 1;
    if (size > maxBytes) {
      throw new DeliveryError(`an Amplitude event is ${size} bytes, over the ${MAX_REQUEST_BYTES}-byte request limit`, {
        retriable: false,
      });
    }
    if (current.length === maxCount || bytes + size > maxBytes) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(part);
    bytes += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}

async function post(url: string, body: string, ctx: DeliveryContext): Promise<void> {
  try {
    await send(
      ctx.fetch,
      url,
      { method: 'POST', headers: { 'content-type': 'application/json', accept: '*/*' }, body, signal: ctx.signal },
      ctx.now(),
      'Amplitude',
    );
  } catch (err) {
    if (err instanceof DeliveryError && err.httpStatus === 429 && err.retryAfterMs === undefined) {
      throw new DeliveryError(err.message, {
        retriable: true,
        httpStatus: 429,
        retryAfterMs: THROTTLE_PAUSE_MS,
        bodyExcerpt: err.bodyExcerpt,
        cause: err,
      });
    }
    throw err;
  }
}

/** Amplitude (HTTP V2 API). */
const amplitude: DestinationModule<AmplitudeConfig> = {
  type: 'amplitude',
  displayName: 'Amplitude',
  configSchema: AmplitudeConfig,
  maxBatchSize: MAX_EVENTS_PER_REQUEST,

  async deliver(events, config, ctx) {
    const parts = events.flatMap((env) => toAmplitudeEvents(env, config)).map((e) => JSON.stringify(e));
    if (parts.length === 0) return;
    const head = `{"api_key":${JSON.stringify(config.apiKey)},"events":[`;
    const tail = '],"options":{"min_id_length":1}}';
    const room = MAX_REQUEST_BYTES - encoder.encode(head + tail).byteLength;
    // A group call becomes two events, so a full batch can need more than one request.
    for (const run of pack(parts, MAX_EVENTS_PER_REQUEST, room)) {
      await post(ENDPOINTS[config.region], head + run.join(',') + tail, ctx);
    }
  },
};

export default amplitude;
