import { describe, expect, it } from 'vitest';
import { ImagePolicy } from '../../core/gitops-config.ts';
import type { CommitChanges } from '../source/git.ts';
import { isRevert, revertDecision, revertMessage } from './reverter.ts';

const workload = (name: string, image: string) => `apiVersion: apps/v1
kind: Deployment
metadata: { name: ${name}, namespace: team }
spec:
  template:
    spec:
      containers:
        - image: ${image} # {"$imagepolicy": "web"}
`;
const file = (before: string, after: string) => ({ file: 'apps/web.yaml', before, after });
const commit: CommitChanges = {
  message: 'deploy(web): registry.example.com/web:2\n',
  parent: 'p'.repeat(40),
  files: [file(`${workload('web', 'web:1')}---\n${workload('other', 'other:1')}`, `${workload('web', 'web:2')}---\n${workload('other', 'other:1')}`)],
};
const failure = { reason: 'rollout did not become healthy: team_web_apps_Deployment: 0 of 1 updated replicas available', unhealthy: ['team_web_apps_Deployment'] };
const policy = (onFailure?: 'revert' | 'none') => ImagePolicy.parse({ name: 'web', image: 'registry.example.com/web', ...(onFailure ? { onFailure } : {}) });

describe('revertDecision', () => {
  it('reverts only when the policy says so, and the policy default is none', () => {
    expect(policy().onFailure).toBe('none');
    expect(revertDecision(policy(), commit, failure)).toEqual({ revert: false, reason: 'policy web has onFailure: none' });
    expect(revertDecision(undefined, commit, failure)).toMatchObject({ revert: false });
    expect(revertDecision(policy('revert'), commit, failure)).toEqual({ revert: true });
  });

  it('never reverts a revert, ours (trailer) or anyone else’s (git revert subject)', () => {
    const ours = { ...commit, message: revertMessage('a'.repeat(40), commit.message, { id: 7 }, 'x') };
    expect(revertDecision(policy('revert'), ours, failure)).toEqual({ revert: false, reason: 'the commit is itself a revert' });
    expect(isRevert('Revert "deploy(web): web:2"\n\nThis reverts commit abc.\n')).toBe(true);
    expect(isRevert('deploy(web): web:2\n')).toBe(false);
  });

  it('does not revert a commit that did not change any of the unhealthy workloads', () => {
    const elsewhere = { ...failure, unhealthy: ['team_other_apps_Deployment'] };
    expect(revertDecision(policy('revert'), commit, elsewhere)).toEqual({ revert: false, reason: 'the commit did not change the unhealthy workloads (team_other_apps_Deployment)' });
  });
});

describe('revertMessage', () => {
  it('is what git revert writes, with the deploy and the reason, and a trailer', () => {
    const sha = 'b'.repeat(40);
    expect(revertMessage(sha, 'deploy(web): registry.example.com/web:2\n\nbody\n', { id: 12 }, 'progress deadline exceeded')).toBe(
      `Revert "deploy(web): registry.example.com/web:2"\n\nThis reverts commit ${sha}.\n\nOrrery deploy #12 did not roll out: progress deadline exceeded\n\nOrrery-Reverts: ${sha}\nOrrery-Deploy: 12\n`,
    );
  });
});
