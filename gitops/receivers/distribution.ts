import { z } from 'zod';
import { InputError } from '../../core/errors.ts';
import type { ImagePush } from '../api/types.ts';
import { invalidReference, isValidDomain } from './reference.ts';
import { checkSize, fromIsoTime, imagePush, parseJsonObject, parseShape, pushesOrIgnored, secretString, verifyAuthorization } from './shared.ts';
import type { Receiver } from './types.ts';

/**
 * CNCF Distribution (the `registry:2` image, and registries built on it) notifications:
 * https://distribution.github.io/distribution/about/notifications/
 *
 * The registry POSTs an envelope `{"events": [...]}` with every configured header; we ask
 * for `Authorization: [Bearer <token>]` in its `notifications.endpoints[].headers`. One
 * envelope carries unrelated events (layer pushes, pulls, several manifests); we keep
 * pushes of a manifest or an index that name a tag.
 *
 * Quirks:
 * - A manifest pushed by digest (the per-platform children of a multi-arch push, or the
 *   docs' own full example) has no `target.tag`: nothing to deploy, so it is skipped.
 * - `request.host` is the Host header the pushing client used, not a configured name, so
 *   behind a proxy it can be an internal address. The `host` setting overrides it.
 * - The registry retries any non-2xx forever and its queue for this endpoint backs up
 *   meanwhile ("Responses" in the docs), so a refused envelope stalls later ones.
 */

const Settings = z.object({
  token: secretString.describe('the bearer token configured in the registry endpoint headers'),
  host: z
    .string()
    .refine(isValidDomain, 'a registry host such as registry.example.com:5000')
    .optional()
    .describe('registry host for image names; defaults to each event\'s request.host'),
});
export type DistributionSettings = z.infer<typeof Settings>;

/** The envelope's media types (v1 from older releases, v2 in the current docs), and plain JSON from look-alikes. */
const CONTENT_TYPES = new Set([
  'application/vnd.docker.distribution.events.v1+json',
  'application/vnd.docker.distribution.events.v2+json',
  'application/json',
]);

/** Targets that are an image or an image index; layer and config blobs are not. */
const MANIFEST_TYPES = new Set([
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
]);

const Event = z.looseObject({
  id: z.string().optional(),
  timestamp: z.string().optional(),
  action: z.string().optional(),
  target: z
    .looseObject({
      mediaType: z.string().optional(),
      digest: z.string().optional(),
      repository: z.string().optional(),
      tag: z.string().optional(),
    })
    .optional(),
  request: z.looseObject({ host: z.string().optional() }).optional(),
});
const Envelope = z.looseObject({ events: z.array(Event) });

function checkContentType(value: string | undefined): void {
  if (value === undefined) return;
  const mediaType = value.split(';')[0]!.trim().toLowerCase();
  if (!CONTENT_TYPES.has(mediaType)) {
    throw new InputError('invalid_payload', `content type ${JSON.stringify(mediaType)} is not a distribution events envelope`, 400, { contentType: mediaType });
  }
}

const distribution: Receiver<DistributionSettings> = {
  provider: 'distribution',
  settingsSchema: Settings,
  receive(req, settings) {
    checkSize(req.body);
    verifyAuthorization(req, `Bearer ${settings.token}`);
    checkContentType(req.headers['content-type']);
    const { events } = parseShape(Envelope, parseJsonObject(req.body));

    const pushes: ImagePush[] = [];
    const ids: string[] = [];
    for (const [i, e] of events.entries()) {
      const t = e.target;
      if (e.action !== 'push' || !t?.tag || !MANIFEST_TYPES.has(t.mediaType ?? '')) continue;
      // Without a host, or with a dotless one (`registry`), Docker would read the name as a
      // Docker Hub image: a different image altogether.
      const host = settings.host ?? e.request?.host;
      if (!host) throw new InputError('invalid_payload', `events.${i}: no request.host; set the host setting`, 400, { field: `events.${i}.request.host` });
      if (!isValidDomain(host)) throw invalidReference(`events.${i}.request.host`, host, 'not a registry host Docker would recognise; set the host setting');
      if (!t.repository) throw new InputError('invalid_payload', `events.${i}: no target.repository`, 400, { field: `events.${i}.target.repository` });
      pushes.push(imagePush(`${host}/${t.repository}`, t.tag, t.digest || undefined, fromIsoTime(e.timestamp)));
      if (e.id) ids.push(e.id);
    }
    // The event ids are the only stable identity across the registry's retries.
    const deliveryId = ids.length > 0 ? ids.sort().join(',') : undefined;
    return pushesOrIgnored(pushes, `no tagged manifest push among ${events.length} event(s)`, deliveryId);
  },
};

export default distribution;
