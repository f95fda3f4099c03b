import { isBearer, safeEqual, verifyHubSignature, type HeaderMap } from '../core/auth.ts';
import { InputError } from '../core/errors.ts';

/**
 * Who may say "look at git now" (`POST /webhooks/git`). The hook only triggers a sync, but
 * unauthenticated it lets anyone on the network make Orrery fetch and apply at will, so,
 * as Flux's Receiver does (a secret for every receiver; Argo CD makes it optional and
 * warns), it wants one of:
 *
 * - `X-Hub-Signature-256` (GitHub, Gitea, Forgejo): the body's HMAC with `gitops.sync.webhookSecret`;
 * - `X-Gitlab-Token` (GitLab, which sends the secret itself rather than a signature): that secret;
 * - `Authorization: Bearer <admin token>`: for scripts and CI jobs.
 *
 * 401 `missing_signature`, `bad_signature`, `bad_token` or `invalid_token` otherwise. The
 * payload itself is never read: any push means the same thing, a sync of the branch.
 *
 * @example verifyGitWebhook(headers, body, { secret: cfg.sync.webhookSecret, adminToken });
 */
export function verifyGitWebhook(headers: HeaderMap, body: string, opts: { secret: string | undefined; adminToken: string }): void {
  if (headers.authorization !== undefined) {
    if (!isBearer(headers.authorization, opts.adminToken)) throw new InputError('invalid_token', 'the Authorization header does not hold the admin token', 401);
    return;
  }
  const secret = opts.secret;
  if (secret !== undefined) {
    if (headers['x-hub-signature-256'] !== undefined) return verifyHubSignature(headers, body, secret);
    const gitlab = headers['x-gitlab-token'];
    if (gitlab !== undefined) {
      if (!safeEqual(gitlab, secret)) throw new InputError('bad_token', 'X-Gitlab-Token does not match gitops.sync.webhookSecret', 401);
      return;
    }
  }
  throw new InputError(
    'missing_signature',
    secret === undefined
      ? 'send the admin token as Authorization: Bearer <token> (set gitops.sync.webhookSecret for a git server to sign with)'
      : 'sign with gitops.sync.webhookSecret (X-Hub-Signature-256, or X-Gitlab-Token), or send the admin token as Authorization: Bearer <token>',
    401,
  );
}
