import { z } from 'zod';
import { InputError } from '../../core/errors.ts';
import type { ImagePush } from '../api/types.ts';
import { invalidReference, parseImageReference } from './reference.ts';
import { checkSize, fromUnixSeconds, ignored, imagePush, parseJsonObject, parseShape, pushesOrIgnored, secretString, verifyAuthorization } from './shared.ts';
import type { Receiver } from './types.ts';

/**
 * Harbor project webhooks, HTTP notify type, "Default" payload format:
 * https://goharbor.io/docs/latest/working-with-projects/project-configuration/configure-webhooks/
 *
 * Harbor sends the webhook's "Auth Header" field verbatim as `Authorization`, so whatever
 * was typed there (`Bearer x`, or a bare key) must match `authHeader` exactly.
 *
 * Quirks:
 * - The payload names no registry host except inside `resource_url`
 *   (`hub.harbor.com/test-webhook/debian:latest`), so the repository comes from there.
 * - A push by digest only has an empty `tag`: skipped.
 * - No delivery id in the Default format.
 * - The "CloudEvents" payload format of newer releases is a different shape: it is ignored
 *   with a reason that says to pick Default.
 */

const Settings = z.object({
  authHeader: secretString.describe("the webhook's Auth Header value, exactly as entered in Harbor"),
});
export type HarborSettings = z.infer<typeof Settings>;

const Payload = z.looseObject({
  type: z.string(),
  occur_at: z.number().nullish(),
  event_data: z.looseObject({
    resources: z.array(
      z.looseObject({
        tag: z.string().nullish(),
        digest: z.string().nullish(),
        resource_url: z.string().nullish(),
      }),
    ),
  }),
});

const harbor: Receiver<HarborSettings> = {
  provider: 'harbor',
  settingsSchema: Settings,
  receive(req, settings) {
    checkSize(req.body);
    verifyAuthorization(req, settings.authHeader);
    const body = parseJsonObject(req.body);
    if ('specversion' in body) return ignored('Harbor CloudEvents payloads are not supported: set the webhook payload format to Default');
    if (body.type !== 'PUSH_ARTIFACT') return ignored(`Harbor event ${JSON.stringify(body.type ?? null).slice(0, 80)} is not PUSH_ARTIFACT`);
    const p = parseShape(Payload, body);

    const pushes: ImagePush[] = [];
    for (const [i, r] of p.event_data.resources.entries()) {
      if (!r.tag) continue;
      if (!r.resource_url) {
        throw new InputError('invalid_payload', `event_data.resources.${i}: no resource_url`, 400, { field: `event_data.resources.${i}.resource_url` });
      }
      const { repository, domain } = parseImageReference(r.resource_url);
      if (domain === undefined) throw invalidReference(`event_data.resources.${i}.resource_url`, r.resource_url, 'no registry host');
      pushes.push(imagePush(repository, r.tag, r.digest || undefined, fromUnixSeconds(p.occur_at ?? undefined)));
    }
    return pushesOrIgnored(pushes, 'Harbor push without a tag');
  },
};

export default harbor;
