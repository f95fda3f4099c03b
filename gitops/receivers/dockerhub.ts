import { z } from 'zod';
import { checkSize, fromUnixSeconds, ignored, imagePush, parseJsonObject, parseShape, secretString, verifyPathSecret } from './shared.ts';
import type { Receiver } from './types.ts';

/**
 * Docker Hub repository webhooks: https://docs.docker.com/docker-hub/repos/manage/webhooks/
 *
 * Docker Hub signs nothing and sends no token: its form takes a name and a URL only. The
 * URL is the secret, so the receiver's URL carries a random segment (`req.pathSecret`).
 *
 * Quirks:
 * - Hub fires on pushes only, and the payload has no event type.
 * - No digest, and no delivery id: `callback_url` differs per push, so it stands in when
 *   present, but the docs call it a legacy field "no longer supported".
 * - `repo_name` has no registry host (`team/app`, official images `library/ubuntu`). It is
 *   normalised to Docker's full name, `docker.io/team/app`, adding the implicit `library/`
 *   to a name without a namespace.
 */

const Settings = z.object({
  pathSecret: secretString.describe('the random path segment in the webhook URL given to Docker Hub'),
});
export type DockerHubSettings = z.infer<typeof Settings>;

const Payload = z.looseObject({
  callback_url: z.string().optional(),
  push_data: z.looseObject({
    tag: z.string().nullish(),
    pushed_at: z.number().nullish(),
  }),
  repository: z.looseObject({ repo_name: z.string() }),
});

const dockerhub: Receiver<DockerHubSettings> = {
  provider: 'dockerhub',
  settingsSchema: Settings,
  receive(req, settings) {
    checkSize(req.body);
    verifyPathSecret(req, settings.pathSecret);
    const p = parseShape(Payload, parseJsonObject(req.body));
    const deliveryId = p.callback_url || undefined;
    const tag = p.push_data.tag;
    if (!tag) return ignored('push without a tag', deliveryId);
    const name = p.repository.repo_name.includes('/') ? p.repository.repo_name : `library/${p.repository.repo_name}`;
    const push = imagePush(`docker.io/${name}`, tag, undefined, fromUnixSeconds(p.push_data.pushed_at ?? undefined));
    return deliveryId === undefined ? { kind: 'pushes', pushes: [push] } : { kind: 'pushes', pushes: [push], deliveryId };
  },
};

export default dockerhub;
