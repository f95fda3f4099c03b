import { z } from 'zod';
import { invalidReference, splitRepository } from './reference.ts';
import { checkSize, ignored, imagePush, parseJsonObject, parseShape, pushesOrIgnored, secretString, verifyPathSecret } from './shared.ts';
import type { Receiver } from './types.ts';

/**
 * Quay (quay.io and Red Hat Quay) "Repository Push" notifications, webhook method:
 * https://docs.redhat.com/en/documentation/red_hat_quay/3.12/html/use_red_hat_quay/repository-events
 *
 * Quay's webhook POST carries no signature or token, so the receiver's URL carries a
 * random segment (`req.pathSecret`), as for Docker Hub.
 *
 * Quirks:
 * - The payload has no event type. A repository push is the one with `updated_tags`;
 *   build and vulnerability notifications sent to the same URL lack it and are ignored.
 * - `updated_tags` is a list of tag names in current Quay; early quay.io sent an object
 *   of tag → image id (https://gist.github.com/jakedt/7533338). Both are read.
 * - No digest, no push time, no delivery id.
 * - `docker_url` (`quay.io/org/repo`) is the pullable name, host included.
 */

const Settings = z.object({
  pathSecret: secretString.describe('the random path segment in the webhook URL given to Quay'),
});
export type QuaySettings = z.infer<typeof Settings>;

const Payload = z.looseObject({
  docker_url: z.string(),
  updated_tags: z.union([z.array(z.string()), z.record(z.string(), z.unknown())]),
});

const quay: Receiver<QuaySettings> = {
  provider: 'quay',
  settingsSchema: Settings,
  receive(req, settings) {
    checkSize(req.body);
    verifyPathSecret(req, settings.pathSecret);
    const body = parseJsonObject(req.body);
    if (!('updated_tags' in body)) return ignored('Quay notification is not a repository push');
    const p = parseShape(Payload, body);
    // Without a host Docker would read the name as a Docker Hub one.
    if (splitRepository(p.docker_url).domain === undefined) throw invalidReference('docker_url', p.docker_url, 'no registry host');
    const tags = Array.isArray(p.updated_tags) ? p.updated_tags : Object.keys(p.updated_tags);
    return pushesOrIgnored(
      tags.map((tag) => imagePush(p.docker_url, tag)),
      'Quay push without tags',
    );
  },
};

export default quay;
