import { z } from 'zod';
import { verifyHubSignature } from '../../core/auth.ts';
import { InputError } from '../../core/errors.ts';
import { checkSize, fromIsoTime, ignored, imagePush, parseJsonObject, parseShape, secretString } from './shared.ts';
import type { Receiver } from './types.ts';

/**
 * GitHub Container Registry, through GitHub's `package` webhook (and the older
 * `registry_package`), from a repository, organisation or GitHub App webhook:
 * https://docs.github.com/en/webhooks/webhook-events-and-payloads#package
 * https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
 * Example payloads: github.com/octokit/webhooks, payload-examples/api.github.com/package/.
 *
 * Verified by `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, keyed with
 * the webhook's secret.
 *
 * Quirks:
 * - The legacy `registry_package` event puts the package under `registry_package`, not
 *   `package`.
 * - A multi-arch push publishes untagged versions too (the per-platform manifests,
 *   attestations): `container_metadata.tag.name` is "" there, and they are skipped.
 * - Non-container packages (npm, Maven, …) come through the same event, without
 *   `container_metadata`; the examples' `package_type`/`ecosystem` disagree with each
 *   other, so `container_metadata` is the test.
 * - GHCR names are lower case but `owner.login` keeps GitHub's casing: lower-cased here.
 * - Version times can be Go's zero time (`0001-01-01T00:00:00Z`): treated as absent.
 * - The signature covers the body only, not `X-GitHub-Delivery` nor a timestamp: a
 *   captured delivery can be replayed, and its delivery id changed, without detection.
 */

const Settings = z.object({
  secret: secretString.describe("the webhook's secret, as set in GitHub"),
});
export type GhcrSettings = z.infer<typeof Settings>;

const Package = z.looseObject({
  name: z.string(),
  owner: z.looseObject({ login: z.string() }),
  package_version: z
    .looseObject({
      created_at: z.string().nullish(),
      updated_at: z.string().nullish(),
      container_metadata: z
        .looseObject({
          tag: z.looseObject({ name: z.string().nullish(), digest: z.string().nullish() }).nullish(),
        })
        .nullish(),
    })
    .nullish(),
});
const Payload = z.looseObject({ action: z.string(), package: Package.optional(), registry_package: Package.optional() });

const EVENTS = new Set(['package', 'registry_package']);

const ghcr: Receiver<GhcrSettings> = {
  provider: 'ghcr',
  settingsSchema: Settings,
  receive(req, settings) {
    checkSize(req.body);
    verifyHubSignature(req.headers, req.body, settings.secret);
    const deliveryId = req.headers['x-github-delivery'] || undefined;
    const event = req.headers['x-github-event'];
    if (!event) throw new InputError('invalid_payload', 'the X-GitHub-Event header is missing', 400, { header: 'x-github-event' });
    if (!EVENTS.has(event)) return ignored(`GitHub event ${JSON.stringify(event)} is not a package event`, deliveryId);

    const p = parseShape(Payload, parseJsonObject(req.body));
    if (p.action !== 'published') return ignored(`package action ${JSON.stringify(p.action)} is not published`, deliveryId);
    const pkg = event === 'package' ? p.package : p.registry_package;
    if (pkg === undefined) throw new InputError('invalid_payload', `the ${event} event has no ${event} object`, 400, { field: event });
    const version = pkg.package_version;
    const tag = version?.container_metadata?.tag;
    if (!version?.container_metadata) return ignored('not a container package', deliveryId);
    if (!tag?.name) return ignored('container version without a tag', deliveryId);

    const repository = `ghcr.io/${pkg.owner.login}/${pkg.name}`.toLowerCase();
    const pushedAt = fromIsoTime(version.updated_at ?? undefined) ?? fromIsoTime(version.created_at ?? undefined);
    const push = imagePush(repository, tag.name, tag.digest || undefined, pushedAt);
    return deliveryId === undefined ? { kind: 'pushes', pushes: [push] } : { kind: 'pushes', pushes: [push], deliveryId };
  },
};

export default ghcr;
