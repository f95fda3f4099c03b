import { OrreryError } from '../../core/errors.ts';

export interface PullRequestTarget {
  apiUrl: string;
  owner: string;
  repo: string;
  token: string;
}

/**
 * Opens a pull request through GitHub's REST API (`POST /repos/{owner}/{repo}/pulls`), or
 * finds the open one for the same head branch when GitHub answers 422 (it exists already),
 * so a retried deploy does not fail on its own earlier PR.
 *
 * @example const url = await openPullRequest(target, { head: 'orrery/airflow-1.3.0', base: 'main', title, body });
 */
export async function openPullRequest(
  target: PullRequestTarget,
  pr: { head: string; base: string; title: string; body: string },
  fetchImpl: typeof fetch = globalThis.fetch,
): Promise<string> {
  const headers = {
    accept: 'application/vnd.github+json',
    authorization: `Bearer ${target.token}`,
    'x-github-api-version': '2022-11-28',
    'content-type': 'application/json',
    'user-agent': 'orrery-gitops',
  };
  const base = `${target.apiUrl.replace(/\/$/, '')}/repos/${encodeURIComponent(target.owner)}/${encodeURIComponent(target.repo)}/pulls`;
  const res = await fetchImpl(base, { method: 'POST', headers, body: JSON.stringify(pr) });
  if (res.status === 201) return ((await res.json()) as { html_url: string }).html_url;
  if (res.status === 422) {
    const q = new URLSearchParams({ head: `${target.owner}:${pr.head}`, base: pr.base, state: 'open' });
    const existing = await fetchImpl(`${base}?${q}`, { headers });
    if (existing.ok) {
      const list = (await existing.json()) as Array<{ html_url: string }>;
      if (list[0]) return list[0].html_url;
    }
  }
  const text = (await res.text().catch(() => '')).slice(0, 300);
  throw new OrreryError('GITHUB_PR_FAILED', `GitHub answered ${res.status} to the pull request: ${text}`, {
    retriable: res.status >= 500 || res.status === 429,
  });
}
