import type { ImagePolicy } from '../../core/gitops-config.ts';
import { isRetriable, OrreryError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import { abortableSleep, backoffDelay, DEFAULT_BACKOFF } from '../../core/retry.ts';
import { changedObjects } from '../apply/manifests.ts';
import type { Deploy, DeployLog } from '../deploys.ts';
import type { CommitChanges, ManifestRepo, RepoFiles } from '../source/git.ts';
import { revertText } from '../source/revert.ts';
import { isTransientGit } from './deployer.ts';

/** A trailer on every revert of ours: a commit that carries it is never reverted in turn. */
export const REVERT_TRAILER = 'Orrery-Reverts';

/** What the sync knows about a failed rollout. */
export interface RolloutFailure {
  /** Why, as the deploy's error says it. */
  reason: string;
  /** Inventory ids of the workloads that did not become healthy. */
  unhealthy: string[];
}

export type RevertDecision = { revert: true } | { revert: false; reason: string };

/** Whether a commit is a revert (ours, by trailer, or anyone's `git revert`). */
export function isRevert(message: string): boolean {
  return message.startsWith('Revert "') || new RegExp(`^${REVERT_TRAILER}: `, 'm').test(message);
}

/**
 * Whether a failed deploy's commit should be reverted. Pure. Only when the policy asks for
 * it; never a revert (a revert that fails to roll out stalls the sync instead: reverting
 * it would put the bad image back and loop); and only when the commit changed one of the
 * workloads that are unhealthy, so that a workload already broken by something else never
 * gets an innocent commit reverted.
 */
export function revertDecision(policy: ImagePolicy | undefined, changes: CommitChanges, failure: RolloutFailure): RevertDecision {
  if (!policy) return { revert: false, reason: 'its image policy is no longer configured' };
  if (policy.onFailure !== 'revert') return { revert: false, reason: `policy ${policy.name} has onFailure: ${policy.onFailure}` };
  if (isRevert(changes.message)) return { revert: false, reason: 'the commit is itself a revert' };
  const changed = changedObjects(changes.files);
  if (!failure.unhealthy.some((id) => changed.has(id))) {
    return { revert: false, reason: `the commit did not change the unhealthy workloads (${failure.unhealthy.join(', ')})` };
  }
  return { revert: true };
}

/** `git revert`'s message, with a body that says which deploy failed and why. */
export function revertMessage(sha: string, original: string, deploy: Pick<Deploy, 'id'>, reason: string): string {
  const subject = original.split('\n')[0]!.trim();
  return `Revert "${subject}"\n\nThis reverts commit ${sha}.\n\nOrrery deploy #${deploy.id} did not roll out: ${reason}\n\n${REVERT_TRAILER}: ${sha}\nOrrery-Deploy: ${deploy.id}\n`;
}

/**
 * The edit that undoes a commit at the tip: each file it changed gets its earlier content
 * back, merged three ways so that later commits to other lines survive. A file changed
 * again on the same lines is a conflict, left to a person.
 */
export function revertEdit(changes: CommitChanges, sha: string): (files: RepoFiles) => Promise<string[]> {
  const conflict = (file: string) =>
    new OrreryError('GIT_REVERT_CONFLICT', `cannot revert ${sha.slice(0, 12)}: ${file} changed again since; revert it by hand`, { retriable: false });
  return async function edit(files) {
    const changed: string[] = [];
    for (const { file, before, after } of changes.files) {
      const current = (await files.exists(file)) ? await files.read(file) : undefined;
      if (current === before) continue;
      if (before === undefined) {
        // The commit added the file: remove it, unless it was edited since.
        if (current !== after) throw conflict(file);
        await files.remove(file);
      } else if (after === undefined || current === undefined) {
        // The commit deleted the file (put it back), or someone deleted it since (conflict).
        if (current !== undefined || after !== undefined) throw conflict(file);
        await files.write(file, before);
      } else {
        const merged = revertText(after, before, current);
        if (merged === undefined) throw conflict(file);
        await files.write(file, merged);
      }
      changed.push(file);
    }
    return changed;
  };
}

export interface Reverter {
  /**
   * Called by the sync after it marked a deploy failed. By the deploy's policy, commits a
   * revert of its commit and moves it to `reverting` (with the revert's sha); the sync
   * then rolls it out and moves it to `reverted`. Resolves when the deploy's record says
   * what happened.
   */
  rolloutFailed(deploy: Deploy, failure: RolloutFailure): Promise<void>;
  stop(): void;
}

/**
 * Reverts failed deploys by policy (`onFailure: revert`), through the same serialised
 * repository as the deployer, so a revert and a new deploy never race on the branch; a
 * push rejected because the branch moved re-applies the revert on the new tip.
 *
 * @example const reverter = createReverter({ repo, deploys, policy: (name) => byName.get(name), logger, onCommitted: () => sync.trigger('revert') });
 */
export function createReverter(opts: {
  repo: ManifestRepo;
  deploys: DeployLog;
  policy: (name: string) => ImagePolicy | undefined;
  logger: Logger;
  onCommitted?: () => void;
  maxAttempts?: number;
}): Reverter {
  const log = opts.logger.child({ unit: 'reverter' });
  const stopping = new AbortController();

  async function rolloutFailed(deploy: Deploy, failure: RolloutFailure): Promise<void> {
    const policy = opts.policy(deploy.policy);
    if (!deploy.sha || policy?.onFailure !== 'revert') return;
    const sha = deploy.sha;
    for (let attempt = 1; ; attempt++) {
      try {
        const changes = await opts.repo.changes(sha);
        const decision = revertDecision(policy, changes, failure);
        if (!decision.revert) {
          log.warn({ deploy: deploy.id, sha, reason: decision.reason }, 'failed deploy not reverted');
          await opts.deploys.transition(deploy.id, 'failed', { error: failure.reason, detail: `not reverted: ${decision.reason}` });
          return;
        }
        const result = await opts.repo.change({ edit: revertEdit(changes, sha), message: revertMessage(sha, changes.message, deploy, failure.reason) });
        // Nothing to change: someone undid it already; the tip is what rolls the workloads back.
        const revertSha = result?.sha ?? (await opts.repo.head());
        // The error stays: why the rollout failed is still the story of a reverted deploy.
        await opts.deploys.transition(deploy.id, 'reverting', {
          revertSha,
          error: failure.reason,
          detail: result ? `revert ${revertSha.slice(0, 12)} committed` : `already undone at ${revertSha.slice(0, 12)}`,
        });
        log.info({ deploy: deploy.id, sha, revertSha }, 'failed deploy reverted in git');
        opts.onCommitted?.();
        return;
      } catch (err) {
        const transient = isRetriable(err) || isTransientGit(err);
        if (!transient || attempt >= (opts.maxAttempts ?? 4) || stopping.signal.aborted) {
          log.error({ err, deploy: deploy.id }, 'revert not committed');
          await opts.deploys.transition(deploy.id, 'failed', { error: failure.reason, detail: `revert not committed: ${(err as Error).message}` });
          return;
        }
        await abortableSleep(backoffDelay(attempt, DEFAULT_BACKOFF), stopping.signal);
      }
    }
  }

  return { rolloutFailed, stop: () => stopping.abort() };
}
