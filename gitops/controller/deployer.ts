import type { ImagePolicy } from '../../core/gitops-config.ts';
import { isRetriable } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import { abortableSleep, backoffDelay, DEFAULT_BACKOFF } from '../../core/retry.ts';
import type { ImagePush } from '../api/types.ts';
import type { Deploy, DeployLog } from '../deploys.ts';
import { decide } from '../policy.ts';
import { fileAllowed, type ManifestRepo } from '../source/git.ts';
import { openPullRequest, type PullRequestTarget } from '../source/github.ts';
import { applySetters, currentValues } from '../update/setters.ts';

export interface Deployer {
  /** Queues a recorded deploy; the webhook answers without waiting for git. */
  submit(deploy: Deploy, policy: ImagePolicy, push: ImagePush): void;
  /** Resolves when everything submitted so far is done (for tests and shutdown). */
  idle(): Promise<void>;
  stop(): Promise<void>;
}

/** The tag in a marked field's value (`repo:tag@digest` or a bare tag). */
function tagOf(kind: string, value: string): string | undefined {
  if (kind === 'tag') return value;
  if (kind !== 'image') return undefined;
  const withoutDigest = value.split('@')[0]!;
  const colon = withoutDigest.lastIndexOf(':');
  return colon > withoutDigest.lastIndexOf('/') ? withoutDigest.slice(colon + 1) : undefined;
}

function render(template: string, vars: Record<string, string>): string {
  return template.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, k: string) => vars[k] ?? '');
}

/**
 * Turns recorded deploy requests into commits, one at a time per repository (the repo
 * serialises), as a small reconcile loop: the webhook only records and submits; this does
 * the work, writes the state back (committed with its sha, pr-opened with its URL, skipped
 * with the reason, or failed), and retries transient failures with backoff.
 *
 * @example const deployer = createDeployer({ repo, deploys, commitMessage, logger });
 */
export function createDeployer(opts: {
  repo: ManifestRepo;
  deploys: DeployLog;
  commitMessage: string;
  logger: Logger;
  github?: PullRequestTarget | undefined;
  baseBranch: string;
  fetch?: typeof fetch;
  maxAttempts?: number;
  /** Called after each commit to the base branch (the sync picks it up at once). */
  onCommitted?: () => void;
}): Deployer {
  const log = opts.logger.child({ unit: 'deployer' });
  const pending = new Set<Promise<void>>();
  const stopping = new AbortController();

  async function run(deploy: Deploy, policy: ImagePolicy, push: ImagePush): Promise<void> {
    const ref = { repository: push.repository, tag: push.tag, digest: push.digest, pinDigest: policy.pinDigest };
    const vars = { policy: policy.name, image: push.repository, tag: push.tag, digest: push.digest ?? '' };
    const message = render(opts.commitMessage, vars);
    let skipped: string | undefined;
    const edit = async (files: { yamlFiles(): Promise<string[]>; read(f: string): Promise<string>; write(f: string, t: string): Promise<void> }) => {
      skipped = undefined;
      const candidates = (await files.yamlFiles()).filter((f) => fileAllowed(f, policy.files));
      const texts = new Map<string, string>();
      let current: string | undefined;
      for (const f of candidates) {
        const text = await files.read(f);
        texts.set(f, text);
        for (const v of currentValues(text, policy.name)) current ??= tagOf(v.kind, v.value);
      }
      const decision = decide(policy, push, current);
      if (!decision.update) {
        skipped = decision.reason;
        return [];
      }
      const changed: string[] = [];
      for (const [f, text] of texts) {
        const result = applySetters(text, policy.name, ref, policy.fields ? { allowFields: policy.fields } : {});
        if (result.changes.length > 0) {
          await files.write(f, result.text);
          changed.push(f);
        }
      }
      if (changed.length === 0) skipped = `no field marked for policy ${policy.name} needs a change`;
      return changed;
    };

    const maxAttempts = opts.maxAttempts ?? 4;
    for (let attempt = 1; ; attempt++) {
      try {
        const targetBranch = policy.mode === 'pull-request' ? `orrery/${policy.name}-${push.tag}` : undefined;
        const result = await opts.repo.change({ edit, message, ...(targetBranch ? { targetBranch } : {}) });
        if (!result) {
          await opts.deploys.transition(deploy.id, 'skipped', { detail: skipped ?? 'nothing to change' });
          return;
        }
        if (policy.mode === 'pull-request') {
          if (!opts.github) throw Object.assign(new Error('pull-request mode needs gitops.github settings'), { retriable: false });
          const url = await openPullRequest(
            opts.github,
            { head: result.branch, base: opts.baseBranch, title: message, body: `Orrery deploy #${deploy.id}: ${push.repository}:${push.tag}${push.digest ? `@${push.digest}` : ''}` },
            opts.fetch,
          );
          await opts.deploys.transition(deploy.id, 'pr-opened', { sha: result.sha, branch: result.branch, prUrl: url });
        } else {
          await opts.deploys.transition(deploy.id, 'committed', { sha: result.sha, branch: result.branch });
          opts.onCommitted?.();
        }
        log.info({ deploy: deploy.id, policy: policy.name, tag: push.tag, sha: result.sha }, 'deploy committed');
        return;
      } catch (err) {
        if (!isRetriable(err) && !isTransientGit(err)) {
          await opts.deploys.transition(deploy.id, 'failed', { error: (err as Error).message });
          log.error({ err, deploy: deploy.id }, 'deploy failed');
          return;
        }
        if (attempt >= maxAttempts || stopping.signal.aborted) {
          await opts.deploys.transition(deploy.id, 'failed', { error: `after ${attempt} attempts: ${(err as Error).message}` });
          return;
        }
        await abortableSleep(backoffDelay(attempt, DEFAULT_BACKOFF), stopping.signal);
      }
    }
  }

  return {
    submit(deploy, policy, push) {
      const p: Promise<void> = run(deploy, policy, push).catch((err: unknown) => log.error({ err }, 'deployer crashed'));
      pending.add(p);
      void p.finally(() => pending.delete(p));
    },
    async idle() {
      while (pending.size > 0) await Promise.allSettled([...pending]);
    },
    async stop() {
      stopping.abort();
      await this.idle();
    },
  };
}

/** Network and HTTP failures from isomorphic-git are worth another try. */
export function isTransientGit(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  if (code === 'HttpError') return ((err as { data?: { statusCode?: number } }).data?.statusCode ?? 500) >= 500;
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT';
}
