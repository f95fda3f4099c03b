import { z } from 'zod';

/**
 * The control-plane config: sources, destinations and routes. Users write it in YAML (the
 * seed); with a database it lives in Postgres and changes without restarts. One schema
 * for both, here.
 */

const Id = z.string().regex(/^[a-zA-Z0-9._-]{1,100}$/, 'use [a-zA-Z0-9._-], at most 100 characters');
const Bucket = z.strictObject({ eventsPerSecond: z.number().positive(), burst: z.number().int().positive() });

/** A tracking source: the write keys SDKs send map to it. */
export const SourceConfig = z
  .strictObject({
    id: Id,
    name: z.string().optional(),
    /** The keys themselves (several during a rotation); hashed at load and never logged. */
    writeKeys: z.array(z.string().min(8, 'write keys have at least 8 characters')).default([]),
    /** `sha256:` and the hex SHA-256 of each key: keeps keys out of config files. */
    writeKeyHashes: z.array(z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected sha256: followed by 64 hex digits')).default([]),
    enabled: z.boolean().default(true),
    /** Browser origins allowed to send with this key; `*` allows any. */
    allowedOrigins: z.array(z.string().min(1)).default(['*']),
    rateLimit: Bucket.optional(),
  })
  .refine((s) => s.writeKeys.length + s.writeKeyHashes.length > 0, {
    message: 'give at least one write key, in writeKeys or writeKeyHashes',
  });
export type SourceConfig = z.infer<typeof SourceConfig>;

/**
 * A destination. `type` picks the sink (webhook, amplitude, …); the other fields are that
 * sink's settings, checked by its own schema, so they stay at the top level as users write
 * them (`url:` for a webhook).
 */
export const DestinationConfig = z.looseObject({
  id: Id,
  type: z.string().regex(/^[a-z0-9-]+$/, 'a destination type is lower-case, e.g. webhook'),
  /** The name Segment's `integrations` object uses for it, e.g. "Google Analytics". */
  name: z.string().optional(),
  enabled: z.boolean().default(true),
});
export type DestinationConfig = z.infer<typeof DestinationConfig>;

/** A condition on one field of the event, by dotted path (`properties.plan`). */
export const Condition = z.discriminatedUnion('op', [
  z.strictObject({ field: z.string().min(1), op: z.enum(['eq', 'neq']), value: z.unknown() }),
  z.strictObject({ field: z.string().min(1), op: z.enum(['in', 'nin']), value: z.array(z.unknown()) }),
  z.strictObject({ field: z.string().min(1), op: z.enum(['gt', 'gte', 'lt', 'lte']), value: z.number() }),
  z.strictObject({ field: z.string().min(1), op: z.literal('exists'), value: z.boolean().default(true) }),
  z.strictObject({ field: z.string().min(1), op: z.literal('contains'), value: z.string() }),
  z.strictObject({
    field: z.string().min(1),
    op: z.literal('matches'),
    value: z
      .string()
      .refine((r) => {
        try {
          new RegExp(r);
          return true;
        } catch {
          return false;
        }
      }, 'not a valid regular expression')
      .meta({ format: 'regex' }),
  }),
]);
export type Condition = z.infer<typeof Condition>;

export const Filter = z.strictObject({
  /** Call types to keep; all when absent. */
  types: z.array(z.enum(['track', 'identify', 'page', 'screen', 'group', 'alias'])).optional(),
  /** Track event names to keep (other call types pass); all when absent. */
  events: z.array(z.string()).optional(),
  /** Every condition must hold. */
  where: z.array(Condition).optional(),
});
export type Filter = z.infer<typeof Filter>;

/** Field edits, applied in order, for PII and for a destination's needs. */
export const Transform = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('rename'), from: z.string().min(1), to: z.string().min(1) }),
  z.strictObject({ op: z.literal('drop'), field: z.string().min(1) }),
  /** SHA-256 of the value (with an optional salt), hex: joinable, not readable. */
  z.strictObject({ op: z.literal('hash'), field: z.string().min(1), salt: z.string().optional() }),
  /** Replaces all but the last `keep` characters with `*`. */
  z.strictObject({ op: z.literal('mask'), field: z.string().min(1), keep: z.number().int().min(0).default(0) }),
  z.strictObject({ op: z.literal('set'), field: z.string().min(1), value: z.unknown() }),
]);
export type Transform = z.infer<typeof Transform>;

export const RouteConfig = z.strictObject({
  source: Id,
  destination: Id,
  enabled: z.boolean().default(true),
  filter: Filter.optional(),
  transforms: z.array(Transform).default([]),
});
export type RouteConfig = z.infer<typeof RouteConfig>;

export const ControlPlaneConfig = z
  .object({
    sources: z.array(SourceConfig).default([]),
    destinations: z.array(DestinationConfig).default([]),
    routes: z.array(RouteConfig).default([]),
  })
  .superRefine((cp, ctx) => {
    const dup = (list: Array<{ id: string }>, key: 'sources' | 'destinations') => {
      const seen = new Set<string>();
      list.forEach((item, i) => {
        if (seen.has(item.id)) ctx.addIssue({ code: 'custom', path: [key, i, 'id'], message: `duplicate ${key.slice(0, -1)} id "${item.id}"` });
        seen.add(item.id);
      });
      return seen;
    };
    const sources = dup(cp.sources, 'sources');
    const destinations = dup(cp.destinations, 'destinations');
    cp.routes.forEach((r, i) => {
      if (!sources.has(r.source)) ctx.addIssue({ code: 'custom', path: ['routes', i, 'source'], message: `no source "${r.source}"` });
      if (!destinations.has(r.destination)) {
        ctx.addIssue({ code: 'custom', path: ['routes', i, 'destination'], message: `no destination "${r.destination}"` });
      }
    });
  });
export type ControlPlaneConfig = z.infer<typeof ControlPlaneConfig>;

/** One consistent view of the control plane, with the version that produced it. */
export interface ControlPlaneSnapshot extends ControlPlaneConfig {
  version: number;
}
