/**
 * Mixpanel, through the Import Events API.
 *
 * Followed: Mixpanel's "Import Events" reference (docs.mixpanel.com/reference/import-events),
 * its API overview (residency hosts), "400 Bad Request" and "413 Payload Too Large"
 * troubleshooting pages, and "Identifying Users (Simplified)":
 * - POST https://api.mixpanel.com/import?strict=1&project_id=<id>; EU residency
 *   api-eu.mixpanel.com, India residency api-in.mixpanel.com (events sent to the wrong
 *   region are not ingested). Body: a JSON array of `{ event, properties }`.
 * - Auth: HTTP Basic with an Owner or Admin service account, `username:secret`, plus the
 *   project_id query parameter (the other documented way, the project token as username,
 *   is not offered here).
 * - Limits: 2000 events per request; 10 MB uncompressed per request in the reference, yet the
 *   sample 413 in Mixpanel's own docs says 2097152 bytes. Requests are split at 2 MB: an extra
 *   request costs little, while a 413 is final and would dead-letter the batch. One event
 *   must stay under 1 MB and 255 properties.
 * - `time` in ms since epoch (rejected when before 1971 or more than an hour ahead);
 *   `distinct_id`; `$insert_id` of at most 36 characters of [A-Za-z0-9-], required with
 *   strict=1, and what makes a resend safe: Mixpanel dedupes on it.
 * - With strict=1 a 400 lists `failed_records` and means the other events were imported;
 *   the batch still fails here (not retriable, the list kept in the body excerpt). A resend
 *   after fixing is safe thanks to `$insert_id`. 401 bad credentials, 413 too large,
 *   429 rate limited, 5xx transient.
 *
 * Segment → Mixpanel mapping (Simplified ID Merge, the default for new projects):
 * - Every event carries `$user_id` (userId) and `$device_id` (anonymousId) as Mixpanel asks,
 *   and `distinct_id` as Mixpanel would derive it: the userId, else `$device:<anonymousId>`.
 *   An event carrying both ids is what merges them.
 * - track → event = event name, properties = properties; page → `Viewed <name> Page` or
 *   `Loaded a Page`; screen → `Viewed <name> Screen` or `Loaded a Screen`.
 * - identify → a `$identify` event (`$identified_id`, `$anon_id`) when the call has both
 *   ids: it links them on Original ID Merge projects, and carries both ids for Simplified
 *   ones. Without an anonymousId there is nothing to link and nothing is sent. Traits are
 *   not sent: profiles live in the separate Engage API, which this module does not call.
 * - group, alias → not sent (group profiles are the Groups API; alias is Original-only).
 * - From context: `ip` (Mixpanel geolocates /import events only from this property),
 *   `$current_url`, `$referrer`, `$os`, `$app_version_string`, `$manufacturer`, `$model`,
 *   `$screen_width`/`$screen_height`, `$carrier` and the `utm_*` campaign fields.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Envelope } from '../../../core/envelope.ts';
import { send } from '../http.ts';
import { DeliveryError, type DestinationModule } from '../types.ts';

const HOSTS = { us: 'api.mixpanel.com', eu: 'api-eu.mixpanel.com', in: 'api-in.mixpanel.com' } as const;

const MAX_EVENTS_PER_REQUEST = 2000;
const MAX_REQUEST_BYTES = 2 * 1024 * 1024;
const INSERT_ID = /^[A-Za-z0-9-]{1,36}$/;

const MixpanelConfig = z.strictObject({
  /** The numeric project id (Project Settings); YAML may give it as a number. */
  projectId: z.union([z.string().regex(/^\d+$/, 'a numeric project id'), z.number().int().positive()]).transform(String),
  /** Service account username. */
  username: z.string().min(1),
  /** Service account secret. */
  secret: z.string().min(1),
  region: z.enum(['us', 'eu', 'in']).default('us'),
});
export type MixpanelConfig = z.infer<typeof MixpanelConfig>;

type Json = Record<string, unknown>;

/** One event in the Import API's format. */
export interface MixpanelEvent {
  event: string;
  properties: Json & { time: number; distinct_id: string; $insert_id: string };
}

const obj = (v: unknown): Json | undefined =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

function compact(o: Json): Json {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/**
 * The messageId when Mixpanel accepts it as `$insert_id`, else a stable 36-character hex
 * digest of it, so that every resend of the same message dedupes.
 */
export function insertId(messageId: string): string {
  return INSERT_ID.test(messageId) ? messageId : createHash('sha256').update(messageId).digest('hex').slice(0, 36);
}

function contextProperties(env: Envelope): Json {
  const ctx = obj(env.context) ?? {};
  const page = obj(ctx['page']);
  const device = obj(ctx['device']);
  const screen = obj(ctx['screen']);
  const campaign = obj(ctx['campaign']);
  return compact({
    ip: str(ctx['ip']),
    $current_url: str(page?.['url']),
    $referrer: str(page?.['referrer']),
    $os: str(obj(ctx['os'])?.['name']),
    $app_version_string: str(obj(ctx['app'])?.['version']),
    $manufacturer: str(device?.['manufacturer']),
    $model: str(device?.['model']),
    $screen_width: num(screen?.['width']),
    $screen_height: num(screen?.['height']),
    $carrier: str(obj(ctx['network'])?.['carrier']),
    utm_source: str(campaign?.['source']),
    utm_medium: str(campaign?.['medium']),
    utm_campaign: str(campaign?.['name']),
    utm_term: str(campaign?.['term']),
    utm_content: str(campaign?.['content']),
  });
}

function eventName(env: Envelope): string | undefined {
  switch (env.type) {
    case 'track':
      return env.event || undefined;
    case 'page':
      return env.name ? `Viewed ${env.name} Page` : 'Loaded a Page';
    case 'screen':
      return env.name ? `Viewed ${env.name} Screen` : 'Loaded a Screen';
    case 'identify':
      return env.userId && env.anonymousId ? '$identify' : undefined;
    case 'group':
    case 'alias':
      return undefined;
  }
}

/** The Import API event for one Segment message, or undefined for calls it does not carry. */
export function toMixpanelEvent(env: Envelope): MixpanelEvent | undefined {
  const event = eventName(env);
  if (event === undefined) return undefined;
  const deviceId = env.anonymousId === undefined ? undefined : `$device:${env.anonymousId}`;
  const identity = compact({
    time: Date.parse(env.timestamp),
    distinct_id: env.userId ?? deviceId,
    $insert_id: insertId(env.messageId),
    $user_id: env.userId,
    $device_id: env.anonymousId,
  }) as MixpanelEvent['properties'];
  if (env.type === 'identify') {
    return { event, properties: { ...identity, $identified_id: env.userId, $anon_id: deviceId } };
  }
  const named = env.type === 'page' || env.type === 'screen' ? compact({ name: env.name }) : {};
  // The identity fields go last: a property called `time` or `distinct_id` must not win.
  return { event, properties: { ...contextProperties(env), ...named, ...env.properties, ...identity } };
}

const encoder = new TextEncoder();

function pack(parts: string[], maxCount: number, maxBytes: number): string[][] {
  const out: string[][] = [];
  let current: string[] = [];
  let bytes = 2;
  for (const part of parts) {
    const size = encoder.encode(part).byteLength + 1;
    if (size + 2 > maxBytes) {
      throw new DeliveryError(`a Mixpanel event is ${size} bytes, over the ${maxBytes}-byte request limit`, { retriable: false });
    }
    if (current.length === maxCount || bytes + size > maxBytes) {
      out.push(current);
      current = [];
      bytes = 2;
    }
    current.push(part);
    bytes += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}

function basicAuth(username: string, secret: string): string {
  const bytes = encoder.encode(`${username}:${secret}`);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return `Basic ${btoa(binary)}`;
}

/** Mixpanel (Import Events API, service account auth). */
const mixpanel: DestinationModule<MixpanelConfig> = {
  type: 'mixpanel',
  displayName: 'Mixpanel',
  configSchema: MixpanelConfig,
  maxBatchSize: MAX_EVENTS_PER_REQUEST,

  async deliver(events, config, ctx) {
    const parts = events.flatMap((env) => {
      const e = toMixpanelEvent(env);
      return e ? [JSON.stringify(e)] : [];
    });
    if (parts.length === 0) return;
    const url = `https://${HOSTS[config.region]}/import?strict=1&project_id=${encodeURIComponent(config.projectId)}`;
    const headers = {
      authorization: basicAuth(config.username, config.secret),
      'content-type': 'application/json',
      accept: 'application/json',
    };
    for (const run of pack(parts, MAX_EVENTS_PER_REQUEST, MAX_REQUEST_BYTES)) {
      await send(ctx.fetch, url, { method: 'POST', headers, body: `[${run.join(',')}]`, signal: ctx.signal }, ctx.now(), 'Mixpanel');
    }
  },
};

export default mixpanel;
