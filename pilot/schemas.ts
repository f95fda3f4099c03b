import { z } from 'zod';
import { DestinationConfig, RouteConfig } from '../core/control-plane.ts';

/**
 * The Pilot API's request and response bodies. Requests are validated with these schemas,
 * and the OpenAPI document is generated from them, so the two cannot drift.
 */

/** The most a list answers (`limit`): the defaults are 100, 100 and 200. */
export const LIST_LIMITS = { deadLetters: 1_000, deploys: 500, debuggerEvents: 200 } as const;

/** Same rule as the control plane's ids. */
const Id = z.string().regex(/^[a-zA-Z0-9._-]{1,100}$/, 'use [a-zA-Z0-9._-], at most 100 characters');

const ExpectedVersion = z
  .number()
  .int()
  .nonnegative()
  .optional()
  .describe('optimistic concurrency: the control-plane version the change was made against; 409 control_plane_conflict when it moved');

export const ErrorBody = z
  .object({
    success: z.literal(false),
    code: z.string().describe('machine-readable, e.g. unauthorized, invalid_request, control_plane_conflict, not_found'),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  });

export const CreateSourceBody = z.strictObject({
  id: Id,
  name: z.string().optional(),
  enabled: z.boolean().default(true),
  allowedOrigins: z.array(z.string().min(1)).default(['*']),
  rateLimit: z.strictObject({ eventsPerSecond: z.number().positive(), burst: z.number().int().positive() }).optional(),
  expectedVersion: ExpectedVersion,
});

export const RotateKeyBody = z.strictObject({
  /** Drop every other key at once (a leaked key); otherwise both work until the old one is deleted. */
  removeOld: z.boolean().default(false).describe('remove the other keys now (a leaked key); otherwise old and new both work until DELETE …/keys/{keyId}'),
  expectedVersion: ExpectedVersion,
});

export const VersionBody = z.strictObject({ expectedVersion: ExpectedVersion });

export const SourceKey = z.object({ id: z.string().describe('the first 12 hex digits of the key\'s SHA-256: names the key, reveals nothing') });

export const SourceView = z
  .object({
    id: z.string(),
    name: z.string().optional(),
    enabled: z.boolean(),
    allowedOrigins: z.array(z.string()),
    rateLimit: z.object({ eventsPerSecond: z.number(), burst: z.number() }).optional(),
    keys: z.array(SourceKey),
  });

export const SourceWithKey = z.object({
  version: z.number().int(),
  source: SourceView,
  writeKey: z.string().describe('the new write key: shown this once, stored only as its SHA-256'),
  keyId: z.string(),
});

export const DestinationWriteBody = z.strictObject({
  destination: DestinationConfig.describe('id, type, name, enabled and the type\'s own settings (e.g. url for a webhook); "[redacted]" keeps the stored value'),
  expectedVersion: ExpectedVersion,
});

export const DestinationUpdateBody = z.strictObject({
  destination: DestinationConfig.partial({ id: true }).describe('the whole destination; "[redacted]" keeps the stored value of a secret'),
  expectedVersion: ExpectedVersion,
});

export const RouteWriteBody = z.strictObject({ route: RouteConfig, expectedVersion: ExpectedVersion });

export const RouteUpdateBody = z.strictObject({
  route: RouteConfig.omit({ source: true, destination: true }).describe('the route\'s settings; its source and destination come from the path'),
  expectedVersion: ExpectedVersion,
});

export const ReplayBody = z.strictObject({
  stage: z.enum(['router', 'sink']).optional().describe('only this stage\'s letters (default: both)'),
  destinationId: Id.optional().describe('only the sink letters of this destination'),
  ids: z.array(z.number().int().positive()).max(10_000).optional(),
  limit: z.number().int().min(1).max(10_000).optional(),
});

export const ReplayResult = z.object({
  replayed: z.array(z.number().int()),
  failed: z.array(z.object({ id: z.number().int(), error: z.string() })),
});

export const ConfigView = z
  .object({
    version: z.number().int(),
    sources: z.array(SourceView),
    destinations: z.array(z.record(z.string(), z.unknown())).describe('secrets shown as "[redacted]"'),
    routes: z.array(RouteConfig),
  });

export const SinkDeadLetterView = z
  .object({
    id: z.number().int(),
    stage: z.literal('sink'),
    destinationId: z.string(),
    messageId: z.string(),
    event: z.record(z.string(), z.unknown()),
    attempts: z.number().int(),
    lastError: z.string(),
    httpStatus: z.number().int().nullable(),
    responseExcerpt: z.string().nullable(),
    firstAttemptAt: z.string(),
    deadAt: z.string(),
    replayedAt: z.string().nullable(),
    replayAttempts: z.number().int(),
    replayError: z.string().nullable(),
  });

export const RouterDeadLetterView = z.object({
  id: z.number().int(),
  stage: z.literal('router'),
  reason: z.string().describe('unparseable, invalid_envelope, unknown_source, …'),
  error: z.string(),
  configVersion: z.number().int().nullable().describe('the control-plane version the router had'),
  originalTopic: z.string().nullable(),
  originalPartition: z.number().int().nullable(),
  originalOffset: z.string().nullable(),
  key: z.string().nullable(),
  raw: z.string().describe('the message as the router read it'),
  rawEncoding: z.enum(['utf8', 'base64']).describe('base64 when the bytes are not UTF-8'),
  dlq: z.object({ topic: z.string(), partition: z.number().int(), offset: z.string() }),
  deadAt: z.string(),
  replayedAt: z.string().nullable(),
  replayAttempts: z.number().int(),
  replayError: z.string().nullable(),
});

export const DeadLetterView = z.discriminatedUnion('stage', [SinkDeadLetterView, RouterDeadLetterView]);

export const DeployView = z
  .object({
    id: z.number().int(),
    provider: z.string(),
    deliveryId: z.string().nullable(),
    policy: z.string(),
    repository: z.string(),
    tag: z.string(),
    digest: z.string().nullable(),
    state: z
      .string()
      .describe('received, committed, pr-opened, synced, rolled-out, failed or skipped (planned instead of synced when the sync runs in plan mode, without a cluster); a failed rollout whose policy says onFailure: revert goes on to reverting, then reverted (or back to failed when the revert does not roll out either)'),
    sha: z.string().nullable(),
    branch: z.string().nullable(),
    prUrl: z.string().nullable(),
    revertSha: z.string().nullable().describe('the commit that reverted this deploy after its rollout failed'),
    error: z.string().nullable().describe('why it failed; kept once reverted'),
    createdAt: z.string(),
    updatedAt: z.string(),
    history: z.array(z.object({ state: z.string(), at: z.string(), detail: z.string().optional() })).describe('the timeline'),
  });

const Totals = z.object({ delivered: z.number(), failed: z.number(), retries: z.number(), deadLettered: z.number(), routed: z.number() });

export const MetricsSummaryView = z
  .object({
    at: z.string(),
    destinations: z.record(z.string(), Totals).describe('since this process started'),
    ingest: z.object({
      accepted: z.number(),
      rejected: z.number(),
      acceptedBySource: z.record(z.string(), z.number()),
      rejectedByCode: z.record(z.string(), z.number()),
      spoolDepth: z.number().nullable(),
    }),
    router: z.object({ consumerLag: z.number().nullable(), configVersion: z.number().nullable() }),
    deadLettersPending: z.record(z.string(), z.number()).describe('per destination, from the store'),
  });

export const DebugEventView = z
  .object({
    seq: z.number().int(),
    sourceId: z.string(),
    partition: z.number().int(),
    offset: z.string(),
    at: z.number(),
    event: z.unknown(),
    valid: z.boolean(),
    error: z.string().optional(),
  });

export const DebuggerStatusView = z.object({ group: z.string().nullable(), ready: z.boolean(), failure: z.string().optional() });

/** Loose: deliveries kept in a file by an older version may lack a field or hold another. */
export const DemoDeliveryView = z.looseObject({
  seq: z.number().int(),
  at: z.number().describe('ms since epoch'),
  webhookId: z.string().nullish(),
  events: z.array(z.unknown()).describe('one event, or several for a batch: true destination'),
});

export const AlertView = z.object({
  key: z.string(),
  ruleId: z.string(),
  kind: z.string(),
  state: z.enum(['pending', 'firing']),
  severity: z.enum(['critical', 'warning']),
  labels: z.record(z.string(), z.string()),
  value: z.number(),
  summary: z.string(),
  activeSince: z.number(),
  firedAt: z.number().optional(),
});
