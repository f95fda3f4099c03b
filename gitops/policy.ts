import semver from 'semver';
import type { ImagePolicy } from '../core/gitops-config.ts';
import type { ImagePush } from './api/types.ts';

export type Decision = { update: true } | { update: false; reason: string };

/** The policies that follow this repository (a push may drive several workloads). */
export function policiesFor(policies: readonly ImagePolicy[], push: ImagePush): ImagePolicy[] {
  return policies.filter((p) => p.image === push.repository);
}

/**
 * Whether a pushed tag should replace the one in the manifests, by the policy's tag filter:
 * - `semver`: the tag is a version in the range and greater than the current one;
 * - `regex`: the tag matches, and its extracted part orders after the current one's
 *   (numerically or alphabetically);
 * - `newest`: any tag, the latest push wins (pushes are applied in arrival order).
 * Pure: the current tag comes from the manifests.
 */
export function decide(policy: ImagePolicy, push: ImagePush, currentTag: string | undefined): Decision {
  const filter = policy.tags;
  if ('semver' in filter) {
    const version = semver.valid(push.tag.replace(/^v/, ''));
    if (!version) return { update: false, reason: `tag ${push.tag} is not a semantic version` };
    if (!semver.satisfies(version, filter.semver, { includePrerelease: false })) return { update: false, reason: `tag ${push.tag} is outside ${filter.semver}` };
    const current = currentTag ? semver.valid(currentTag.replace(/^v/, '')) : null;
    if (current && !semver.gt(version, current)) return { update: false, reason: `tag ${push.tag} is not newer than ${currentTag}` };
    return { update: true };
  }
  if ('regex' in filter) {
    const re = new RegExp(filter.regex);
    const m = re.exec(push.tag);
    if (!m) return { update: false, reason: `tag ${push.tag} does not match ${filter.regex}` };
    if (!currentTag) return { update: true };
    const cur = re.exec(currentTag);
    if (!cur) return { update: true };
    const key = (match: RegExpExecArray) => (filter.extract ? filter.extract.replace(/\$(\d+)/g, (_, i: string) => match[Number(i)] ?? '') : match[0]);
    const [a, b] = [key(m), key(cur)];
    const newer = filter.order === 'numeric' ? Number(a) > Number(b) : a > b;
    return newer ? { update: true } : { update: false, reason: `tag ${push.tag} does not order after ${currentTag}` };
  }
  return currentTag === push.tag ? { update: false, reason: `tag ${push.tag} is already deployed` } : { update: true };
}
