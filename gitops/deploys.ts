import type { ImagePush, DeployState } from './api/types.ts';
import { migrate } from '../core/store/migrate.ts';
import { dialectOf, type Store } from '../core/store/types.ts';

/**
 * Every deploy request and what became of it: received → committed (sha) or pr-opened →
 * synced → rolled-out (planned instead, in plan mode), or failed / skipped (with the reason); a failed rollout may go on to
 * reverting (revertSha) → reverted. In the store: Postgres, or the embedded SQLite store.
 */
export interface Deploy {
  id: number;
  provider: string;
  deliveryId: string | null;
  policy: string;
  repository: string;
  tag: string;
  digest: string | null;
  state: DeployState;
  sha: string | null;
  branch: string | null;
  prUrl: string | null;
  /** The commit that reverted this deploy's commit after its rollout failed. */
  revertSha: string | null;
  error: string | null;
  createdAt: string;
  updatedAt: string;
  history: Array<{ state: DeployState; at: string; detail?: string }>;
}

export interface DeployLog {
  /** Records a request; a delivery seen before (same provider, delivery id and policy) is a duplicate. */
  record(input: { provider: string; deliveryId: string | undefined; policy: string; push: ImagePush }): Promise<{ deploy: Deploy; duplicate: boolean }>;
  transition(id: number, state: DeployState, fields?: { sha?: string; branch?: string; prUrl?: string; revertSha?: string; error?: string; detail?: string }): Promise<void>;
  get(id: number): Promise<Deploy | undefined>;
  list(opts?: { limit?: number; policy?: string }): Promise<Deploy[]>;
}

/** The deploys table in either dialect: the same columns, each dialect's id and time types. */
function deploysTable(t: { id: string; time: string; now: string }): string {
  return `create table if not exists deploys (
      id ${t.id},
      provider text not null,
      delivery_id text,
      policy text not null,
      repository text not null,
      tag text not null,
      digest text,
      state text not null,
      sha text,
      branch text,
      pr_url text,
      error text,
      created_at ${t.time} not null default ${t.now},
      updated_at ${t.time} not null default ${t.now},
      history jsonb not null default '[]'
    );
    create unique index if not exists deploys_delivery on deploys (provider, delivery_id, policy) where delivery_id is not null;`;
}

export const DEPLOY_MIGRATIONS = [
  {
    id: '0400_deploys',
    sql: deploysTable({ id: 'bigserial primary key', time: 'timestamptz', now: 'now()' }),
    sqlite: deploysTable({ id: 'integer primary key autoincrement', time: 'text', now: '(now())' }),
  },
  { id: '0401_deploys_revert', sql: 'alter table deploys add column if not exists revert_sha text', sqlite: 'alter table deploys add column revert_sha text' },
];

type Row = Record<string, unknown> & { id: string; history: Deploy['history']; created_at: Date; updated_at: Date };

function fromRow(r: Row): Deploy {
  return {
    id: Number(r.id),
    provider: r.provider as string,
    deliveryId: (r.delivery_id as string | null) ?? null,
    policy: r.policy as string,
    repository: r.repository as string,
    tag: r.tag as string,
    digest: (r.digest as string | null) ?? null,
    state: r.state as DeployState,
    sha: (r.sha as string | null) ?? null,
    branch: (r.branch as string | null) ?? null,
    prUrl: (r.pr_url as string | null) ?? null,
    revertSha: (r.revert_sha as string | null) ?? null,
    error: (r.error as string | null) ?? null,
    createdAt: new Date(r.created_at).toISOString(),
    updatedAt: new Date(r.updated_at).toISOString(),
    history: r.history,
  };
}

/** @example const deploys = await createPgDeployLog(store); */
export async function createPgDeployLog(store: Store): Promise<DeployLog> {
  await migrate(store, DEPLOY_MIGRATIONS);
  return {
    async record({ provider, deliveryId, policy, push }) {
      const entry = JSON.stringify([{ state: 'received', at: new Date().toISOString() }]);
      const { rows } = await store.query<Row>(
        `insert into deploys (provider, delivery_id, policy, repository, tag, digest, state, history)
         values ($1, $2, $3, $4, $5, $6, 'received', $7)
         on conflict (provider, delivery_id, policy) where delivery_id is not null do nothing
         returning *`,
        [provider, deliveryId ?? null, policy, push.repository, push.tag, push.digest ?? null, entry],
      );
      if (rows[0]) return { deploy: fromRow(rows[0]), duplicate: false };
      const existing = await store.query<Row>('select * from deploys where provider = $1 and delivery_id = $2 and policy = $3', [provider, deliveryId, policy]);
      return { deploy: fromRow(existing.rows[0]!), duplicate: true };
    },
    async transition(id, state, f = {}) {
      const entry = JSON.stringify([{ state, at: new Date().toISOString(), ...(f.detail ? { detail: f.detail } : {}) }]);
      // One history entry appended: jsonb's || on Postgres; on SQLite, || would join the texts.
      const append = dialectOf(store) === 'sqlite' ? "json_insert(history, '$[#]', json(json_extract($7, '$[0]')))" : 'history || $7::jsonb';
      await store.query(
        `update deploys set state = $2, sha = coalesce($3, sha), branch = coalesce($4, branch), pr_url = coalesce($5, pr_url),
           revert_sha = coalesce($8, revert_sha), error = $6, updated_at = now(), history = ${append} where id = $1`,
        [id, state, f.sha ?? null, f.branch ?? null, f.prUrl ?? null, f.error ?? null, entry, f.revertSha ?? null],
      );
    },
    async get(id) {
      const { rows } = await store.query<Row>('select * from deploys where id = $1', [id]);
      return rows[0] ? fromRow(rows[0]) : undefined;
    },
    async list(opts = {}) {
      const { rows } = await store.query<Row>('select * from deploys where (cast($1 as text) is null or policy = $1) order by id desc limit $2', [
        opts.policy ?? null,
        opts.limit ?? 100,
      ]);
      return rows.map(fromRow);
    },
  };
}
