import { z } from 'zod';

/** The GitOps half's config: the manifests repository, the receivers, the image policies. */

const TagFilter = z.union([
  z.strictObject({ semver: z.string().min(1) }),
  z.strictObject({
    /** A regex the tag must match; with `extract` (e.g. `$1`), the part that orders tags. */
    regex: z.string().min(1),
    extract: z.string().optional(),
    order: z.enum(['numeric', 'alphabetical']).default('numeric'),
  }),
  /** Any tag; the most recently pushed wins. */
  z.strictObject({ newest: z.literal(true) }),
]);
export type TagFilter = z.infer<typeof TagFilter>;

export const ImagePolicy = z.strictObject({
  name: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'a DNS label: lower-case letters, digits and -'),
  /** Repository without tag: `registry.example.com/airflow`. */
  image: z.string().min(1),
  tags: TagFilter.default({ newest: true }),
  /** Write `repo:tag@sha256:…` in full-image fields when the registry sent a digest. */
  pinDigest: z.boolean().default(false),
  mode: z.enum(['commit', 'pull-request']).default('commit'),
  /** Globs of the files (relative to the repo) that may change; all when absent. */
  files: z.array(z.string().min(1)).optional(),
  /** Field patterns (`spec.template.spec.containers.*.image`, `**`) that may change; all marked ones when absent. */
  fields: z.array(z.string().min(1)).optional(),
  /**
   * When the rollout of a commit of this policy fails (the health wait times out, or a
   * Deployment reports ProgressDeadlineExceeded): `revert` commits a revert of that commit
   * to the manifests repository, so the next sync rolls the workloads back to the image
   * before; `none` marks the deploy failed and leaves git alone. Commit mode only (a pull
   * request's merge is not a deploy of ours to revert).
   *
   * The default is `none`: a revert is a write to the team's repository that no person
   * asked for, and a rollout can fail for reasons that are the cluster's, not the image's
   * (quota, no room on the nodes, a registry that is slow to pull from); reverting then
   * hides the real problem and races the team's own fix. Flux and Argo CD never revert by
   * themselves, so whoever turns this on chooses it knowingly.
   */
  onFailure: z.enum(['none', 'revert']).default('none'),
});
export type ImagePolicy = z.infer<typeof ImagePolicy>;

export const GitopsConfig = z.strictObject({
  /** Optional; `false` selects {@link GitopsOff}. */
  enabled: z.literal(true).optional(),
  repo: z.strictObject({
    /** http(s) URL of the manifests repository, or a local path to a git work tree. */
    url: z.string().min(1),
    branch: z.string().min(1).default('main'),
    token: z.string().optional(),
    /** Folder in the repository that holds the manifests. */
    path: z.string().default('.'),
    /**
     * Files outside `path` that image policies may also edit (never synced): the values
     * files the manifests are rendered from, whose marked tags move with the render.
     */
    valuesFiles: z.array(z.string().regex(/^(?!\/)(?!.*(?:^|\/)\.\.(?:\/|$)).+\.ya?ml$/, 'a YAML file relative to the repository root, without ..')).default([]),
    author: z.strictObject({ name: z.string().default('Orrery'), email: z.string().default('orrery@localhost') }).prefault({}),
    /** Where the clone lives; default `<dataDir>/gitops/<hash of url>`. */
    workdir: z.string().optional(),
  }),
  github: z
    .strictObject({
      apiUrl: z.url().default('https://api.github.com'),
      owner: z.string().min(1),
      repo: z.string().min(1),
      token: z.string().min(1),
    })
    .optional(),
  receivers: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
  policies: z.array(ImagePolicy).default([]),
  commitMessage: z.string().default('deploy({{policy}}): {{image}}:{{tag}}'),
  sync: z
    .strictObject({
      /** Drift check: a sync at least this often, besides git pushes and our own commits. */
      intervalMs: z.coerce.number().int().min(1_000).default(60_000),
      /** How long rollouts may take before the deploy is marked failed. */
      healthTimeoutMs: z.coerce.number().int().min(1_000).default(5 * 60_000),
      /** KUBECONFIG of the cluster to sync to; none: plan mode. */
      kubeconfig: z.string().optional(),
      /**
       * The secret of the git push webhook (`POST /webhooks/git`): GitHub, Gitea and Forgejo
       * sign with it (`X-Hub-Signature-256`), GitLab sends it as `X-Gitlab-Token`. Absent:
       * the hook takes only the admin token.
       */
      webhookSecret: z.string().min(16, 'at least 16 characters').optional(),
    })
    .prefault({}),
});
export type GitopsConfig = z.infer<typeof GitopsConfig>;

/**
 * `gitops: { enabled: false }`: no GitOps at all, not even the embedded default that
 * `orrery start` uses when the section is absent. The section's other keys, if any, are
 * ignored, so a configured section can be switched off without deleting it.
 */
export const GitopsOff = z.object({ enabled: z.literal(false) }).transform(() => ({ enabled: false as const }));

/** The `gitops` section: absent (the embedded default), off, or configured. */
export const GitopsSection = z.discriminatedUnion('enabled', [GitopsOff, GitopsConfig]);
export type GitopsSection = z.infer<typeof GitopsSection>;

/**
 * The configured section, or undefined when it is absent or switched off.
 *
 * @example activeGitops(config.gitops)?.policies ?? []
 */
export function activeGitops(section: GitopsSection | undefined): GitopsConfig | undefined {
  return section === undefined || section.enabled === false ? undefined : section;
}
