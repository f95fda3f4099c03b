import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { verifyGitWebhook } from './git-webhook.ts';

const SECRET = 'git-webhook-secret-0123';
const ADMIN = 'admin-token-0123456789';
const BODY = JSON.stringify({ ref: 'refs/heads/main', after: 'a'.repeat(40) });
const hub = (body: string, secret = SECRET) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
const code = (f: () => void) => {
  try {
    f();
    return 'accepted';
  } catch (err) {
    return `${(err as { status: number }).status} ${(err as { code: string }).code}`;
  }
};

describe('git push webhook verification', () => {
  it("takes GitHub's X-Hub-Signature-256, GitLab's X-Gitlab-Token, or the admin token", () => {
    const opts = { secret: SECRET, adminToken: ADMIN };
    expect(code(() => verifyGitWebhook({ 'x-hub-signature-256': hub(BODY) }, BODY, opts))).toBe('accepted');
    expect(code(() => verifyGitWebhook({ 'x-gitlab-token': SECRET }, BODY, opts))).toBe('accepted');
    expect(code(() => verifyGitWebhook({ authorization: `Bearer ${ADMIN}` }, '', opts))).toBe('accepted');
  });

  it('refuses a missing, wrong or replayed-onto-another-body signature with 401', () => {
    const opts = { secret: SECRET, adminToken: ADMIN };
    expect(code(() => verifyGitWebhook({}, BODY, opts))).toBe('401 missing_signature');
    expect(code(() => verifyGitWebhook({ 'x-hub-signature-256': hub(BODY, 'another-secret-0123') }, BODY, opts))).toBe('401 bad_signature');
    expect(code(() => verifyGitWebhook({ 'x-hub-signature-256': hub(BODY) }, `${BODY} `, opts))).toBe('401 bad_signature');
    expect(code(() => verifyGitWebhook({ 'x-gitlab-token': 'not-the-secret' }, BODY, opts))).toBe('401 bad_token');
    expect(code(() => verifyGitWebhook({ authorization: 'Bearer not-the-admin-token' }, BODY, opts))).toBe('401 invalid_token');
    // A wrong admin token is not rescued by a good signature: the caller said who it is.
    expect(code(() => verifyGitWebhook({ authorization: 'Bearer nope', 'x-hub-signature-256': hub(BODY) }, BODY, opts))).toBe('401 invalid_token');
  });

  it('without a configured secret, only the admin token works', () => {
    const opts = { secret: undefined, adminToken: ADMIN };
    expect(code(() => verifyGitWebhook({ 'x-hub-signature-256': hub(BODY) }, BODY, opts))).toBe('401 missing_signature');
    expect(code(() => verifyGitWebhook({ 'x-gitlab-token': SECRET }, BODY, opts))).toBe('401 missing_signature');
    expect(code(() => verifyGitWebhook({ authorization: `Bearer ${ADMIN}` }, BODY, opts))).toBe('accepted');
  });
});
