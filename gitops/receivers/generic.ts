import { z } from 'zod';
import { verifyStandardWebhook } from '../../core/auth.ts';
import { checkSize, imagePush, parseJsonObject, parseShape } from './shared.ts';
import type { Receiver } from './types.ts';

/**
 * A generic push hook for CI jobs and registries we have no receiver for: POST
 * `{"image": "registry.example.com/team/app", "tag": "1.2.3", "digest": "sha256:…"}`
 * (digest optional), signed the Standard Webhooks way (https://www.standardwebhooks.com/,
 * spec/standard-webhooks.md), the same scheme Orrery's own webhook destination signs with:
 *
 *   webhook-id:        unique per message, kept across retries (our delivery id)
 *   webhook-timestamp: Unix seconds
 *   webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">
 *
 * keyed with the base64-decoded bytes after `whsec_`. The header may list several
 * space-separated signatures (during a secret rotation); one matching `v1` is enough, and
 * other versions (`v1a`, asymmetric) are skipped. Timestamps more than five minutes from
 * `req.now` are refused, as the spec's libraries do, so a captured request cannot be
 * replayed later; the id is signed, so within the window retries dedup on it.
 */

const Settings = z.object({
  secret: z
    .string()
    .regex(/^whsec_[A-Za-z0-9+/=]{16,}$/, 'a Standard Webhooks secret: whsec_ and base64')
    .describe('the signing secret shared with the sender'),
});
export type GenericSettings = z.infer<typeof Settings>;

const Payload = z.looseObject({
  image: z.string().describe('repository without tag or digest, registry host included'),
  tag: z.string(),
  digest: z.string().nullish(),
});

const generic: Receiver<GenericSettings> = {
  provider: 'generic',
  settingsSchema: Settings,
  receive(req, settings) {
    checkSize(req.body);
    const deliveryId = verifyStandardWebhook(req.headers, req.body, [settings.secret], req.now);
    const p = parseShape(Payload, parseJsonObject(req.body));
    return { kind: 'pushes', pushes: [imagePush(p.image, p.tag, p.digest ?? undefined)], deliveryId };
  },
};

export default generic;
