/**
 * The GitOps half's own vocabulary: what a registry told us (an image push), and what we
 * did about it (a deploy request and its states).
 */

/** One pushed image, as a receiver understood a registry's webhook. */
export interface ImagePush {
  /** Repository without tag or digest, registry host included when the registry has one: `registry.example.com/team/airflow`. */
  repository: string;
  tag: string;
  /** `sha256:…`, when the registry sends it (Docker Hub does not). */
  digest?: string | undefined;
  /** When the registry says the push happened (ms since epoch), for "newest by push time". */
  pushedAt?: number | undefined;
}

/** What a receiver makes of one delivery. */
export type ReceiverResult =
  /** Verified and parsed; `deliveryId` (when the provider has one) dedups retried deliveries. */
  | { kind: 'pushes'; pushes: ImagePush[]; deliveryId?: string | undefined }
  /** Verified, but nothing to do (a pull, a delete, a push without a tag, a ping). */
  | { kind: 'ignored'; reason: string; deliveryId?: string | undefined };

/** The raw request a receiver sees: verification needs the exact bytes. */
export interface ReceiverRequest {
  /** Header names in lower case. */
  headers: Record<string, string>;
  body: string;
  /** The path segment after the provider, for secret-path providers (Docker Hub, Quay). */
  pathSecret?: string | undefined;
  /** ms since epoch, for replay windows. */
  now: number;
}

/**
 * received → committed (or pr-opened) → synced → rolled-out; or failed, or skipped. In plan
 * mode (no cluster), a committed deploy ends at planned: the sync recorded what it would
 * apply, and applied nothing. A failed
 * rollout whose policy says `onFailure: revert` goes on: failed → reverting (the revert is
 * committed) → reverted (the revert rolled out healthy), or back to failed when the revert
 * itself does not roll out (the sync then stalls).
 */
export const DEPLOY_STATES = ['received', 'committed', 'pr-opened', 'planned', 'synced', 'rolled-out', 'failed', 'skipped', 'reverting', 'reverted'] as const;
export type DeployState = (typeof DEPLOY_STATES)[number];
