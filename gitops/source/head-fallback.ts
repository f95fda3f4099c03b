import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';

/**
 * An isomorphic-git HTTP client that clones and fetches one configured branch whatever
 * the remote's HEAD says.
 *
 * isomorphic-git's fetch (and so its clone) always resolves the remote's HEAD, even for a
 * single-branch fetch of a named ref, and fails with `NotFoundError: Could not find HEAD`
 * when HEAD names a branch that does not exist: a plain `git init --bare` whose default is
 * `master`, then a push of `main`, is enough. Git itself fetches `main` from such a
 * remote without complaint. When the ref advertisement of `git-upload-pack` names no HEAD
 * (neither a HEAD line nor a `symref=HEAD:` capability), this client adds the capability
 * `symref=HEAD:refs/heads/<branch>` to its first line, so that isomorphic-git takes the
 * configured branch as the default one. An advertisement that names HEAD is passed on as
 * it came.
 *
 * @example git.clone({ fs, http: headFallbackHttp(http, 'main'), dir, url, ref: 'main', singleBranch: true });
 */
export function headFallbackHttp(inner: HttpClient, branch: string): HttpClient {
  return {
    async request(req: GitHttpRequest): Promise<GitHttpResponse> {
      const res = await inner.request(req);
      const isAdvertisement = (req.method ?? 'GET') === 'GET' && /\/info\/refs\?service=git-upload-pack$/.test(req.url);
      if (!isAdvertisement || res.statusCode !== 200 || !res.body) return res;
      const chunks: Uint8Array[] = [];
      for await (const chunk of res.body) chunks.push(chunk);
      const body = withHeadSymref(Buffer.concat(chunks), branch);
      return { ...res, body: (async function* advertisement() { yield body; })() };
    },
  };
}

/**
 * Adds `symref=HEAD:refs/heads/<branch>` to the capabilities of the first ref line of a
 * smart-HTTP ref advertisement (pkt-lines) when the advertisement names no HEAD; returns
 * the input unchanged otherwise, or when it is not a v0/v1 advertisement it understands.
 */
export function withHeadSymref(advert: Buffer, branch: string): Buffer {
  const lines: Buffer[] = [];
  for (let at = 0; at < advert.length; ) {
    const len = Number.parseInt(advert.subarray(at, at + 4).toString('latin1'), 16);
    if (!Number.isInteger(len) || (len !== 0 && len < 4) || at + Math.max(len, 4) > advert.length) return advert;
    lines.push(advert.subarray(at, at + Math.max(len, 4)));
    at += Math.max(len, 4);
  }
  // The first ref line is the first one that carries capabilities after a NUL.
  const first = lines.findIndex((l) => l.length > 4 && l.includes(0));
  if (first < 0) return advert;
  const payload = lines[first]!.subarray(4).toString('utf8');
  const nul = payload.indexOf('\0');
  const refName = payload.slice(41, nul);
  const caps = payload.slice(nul + 1).replace(/\n$/, '');
  const namesHead = refName === 'HEAD' || caps.split(' ').some((c) => c.startsWith('symref=HEAD:'));
  if (namesHead || payload.startsWith('version 2')) return advert;
  const text = `${payload.slice(0, nul + 1)}${caps} symref=HEAD:refs/heads/${branch}\n`;
  const bytes = Buffer.from(text, 'utf8');
  const line = Buffer.concat([Buffer.from((bytes.length + 4).toString(16).padStart(4, '0'), 'latin1'), bytes]);
  return Buffer.concat([...lines.slice(0, first), line, ...lines.slice(first + 1)]);
}
