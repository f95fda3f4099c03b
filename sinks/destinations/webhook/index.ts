import { z } from 'zod';
import { signStandardWebhook, standardWebhookHeaders } from '../../../core/auth.ts';
import type { Envelope } from '../../../core/envelope.ts';
import { guardedPost, privateLiteral } from '../../ssrf.ts';
import { checkStatus, unreachable } from '../http.ts';
import { urlPattern, type DestinationModule } from '../types.ts';

/**
 * The generic webhook: POSTs each event as JSON (or, with `batch: true`, a JSON array of up
 * to 100 events). With a `secret`, requests are signed the Standard Webhooks way
 * (standardwebhooks.com): `webhook-id`, `webhook-timestamp` (Unix seconds) and
 * `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed with
 * the base64 bytes after `whsec_`. The id is the messageId (a batch: the first one and the
 * count), so receivers can dedup on it across our retries.
 *
 * URLs that resolve to private, loopback or link-local addresses are refused unless
 * `allowPrivateNetwork: true`.
 */
const Config = z.object({
  url: z.url({ protocol: /^https?$/ }).meta({
    pattern: urlPattern('https?'),
    description: 'http or https. The pattern shows host names; IP literals are taken too, a private, loopback or link-local one only with allowPrivateNetwork: true',
  }),
  secret: z
    .string()
    .regex(/^whsec_[A-Za-z0-9+/=]{16,}$/, 'a Standard Webhooks secret: whsec_ and base64')
    .optional(),
  headers: z.record(z.string(), z.string()).default({}),
  batch: z.boolean().default(false),
  allowPrivateNetwork: z.boolean().default(false),
  timeoutMs: z.number().int().min(100).max(60_000).default(10_000),
}).superRefine(function privateUrlNeedsOptIn(c, ctx) {
  // Refused when the destination is created or updated, not only when it delivers.
  const reason = c.allowPrivateNetwork ? undefined : privateLiteral(c.url);
  if (reason) ctx.addIssue({ code: 'custom', path: ['url'], message: reason });
});
export type WebhookConfig = z.infer<typeof Config>;

/** What receivers get: the Segment message, without Orrery's own bookkeeping. */
export function webhookPayload(e: Envelope): Record<string, unknown> {
  const { v: _v, routing: _routing, ...message } = e as Envelope & Record<string, unknown>;
  return message;
}

/** The Standard Webhooks signature header value (core/auth.ts, shared with the receivers that verify it). */
export { signStandardWebhook };

const webhook: DestinationModule<WebhookConfig> = {
  type: 'webhook',
  displayName: 'Webhooks',
  configSchema: Config as unknown as z.ZodType<WebhookConfig>,
  maxBatchSize: 100,
  batchSize: (config) => (config.batch ? 100 : 1),
  async deliver(events, config, ctx) {
    const what = `webhook ${new URL(config.url).host}`;
    const calls = config.batch ? [events] : events.map((e) => [e]);
    for (const group of calls) {
      const body = JSON.stringify(config.batch ? group.map(webhookPayload) : webhookPayload(group[0]!));
      const id = group.length === 1 ? group[0]!.messageId : `${group[0]!.messageId}+${group.length - 1}`;
      const headers: Record<string, string> = { ...config.headers, 'content-type': 'application/json', 'user-agent': 'orrery-webhook/1' };
      if (config.secret) Object.assign(headers, standardWebhookHeaders(config.secret, id, body, ctx.now()));
      // undici's request rather than ctx.fetch: the webhook is the one destination whose
      // speed is the sink's (see guardedPost); vendor destinations keep fetch.
      let res: Awaited<ReturnType<typeof guardedPost>>;
      try {
        res = await guardedPost(config.url, {
          headers,
          body,
          signal: ctx.signal,
          timeoutMs: config.timeoutMs,
          allowPrivateNetwork: config.allowPrivateNetwork,
        });
      } catch (err) {
        throw unreachable(err, what);
      }
      const retryAfter = res.headers['retry-after'];
      checkStatus(res.status, (Array.isArray(retryAfter) ? retryAfter[0] : retryAfter) ?? null, res.body, ctx.now(), what);
    }
  },
};
export default webhook;
