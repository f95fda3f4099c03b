import { createHash } from 'node:crypto';
import { ControlPlaneConfig, type ControlPlaneSnapshot } from './control-plane.ts';
import type { ControlPlaneSource } from './control-plane-source.ts';
import { snapshotOf } from './control-plane-static.ts';
import { hashWriteKeySync } from './contracts/write-keys.ts';
import { ConfigError, InputError, OrreryError } from './errors.ts';
import type { Logger } from './logger.ts';
import { migrate, type Migration } from './store/migrate.ts';
import type { SqliteQueryable } from './store/sqlite.ts';
import { dialectOf, type Queryable, type Store } from './store/types.ts';

/**
 * The control plane in Postgres as versioned documents: every change inserts the whole
 * config as a new row, and the current config is the row with the highest version. Old rows
 * are the audit trail (and what a rollback would copy from). Changes are announced with
 * NOTIFY so that every process reloads without a restart.
 */

/** The default NOTIFY channel. Channels are database-wide: deployments sharing one database pass their own. */
export const CONTROL_PLANE_CHANNEL = 'orrery_control_plane';

/** The versions table in either dialect: the same columns, each dialect's id and time types. */
function versionsTable(t: { version: string; time: string; now: string }): string {
  return `create table control_plane_versions (
      version ${t.version},
      doc jsonb not null,
      seed_hash text,
      note text,
      created_at ${t.time} not null default ${t.now}
    )`;
}

export const CONTROL_PLANE_MIGRATIONS: readonly Migration[] = [
  {
    id: '0100_control_plane',
    sql: versionsTable({ version: 'bigserial primary key', time: 'timestamptz', now: 'now()' }),
    sqlite: versionsTable({ version: 'integer primary key autoincrement', time: 'text', now: '(now())' }),
  },
];

/**
 * Serialises seeding and updates within one schema. Keyed on the schema so that tests (and
 * deployments) sharing a database on separate schemas do not wait on each other. SQLite
 * needs none: its transactions take the one write lock as they begin (BEGIN IMMEDIATE).
 */
async function lockControlPlane(store: Store, tx: Queryable): Promise<void> {
  if (dialectOf(store) === 'postgres') await tx.query("select pg_advisory_xact_lock(hashtext('orrery.control_plane.' || current_schema()))");
}

const EMPTY: ControlPlaneConfig = { sources: [], destinations: [], routes: [] };

const migrated = new WeakMap<Store, Promise<void>>();

/** Runs the migrations once per store object; a failure is forgotten so the next call retries. */
function ensureMigrated(store: Store): Promise<void> {
  let done = migrated.get(store);
  if (!done) {
    done = migrate(store, [...CONTROL_PLANE_MIGRATIONS]).then(
      () => undefined,
      (err: unknown) => {
        migrated.delete(store);
        throw err;
      },
    );
    migrated.set(store, done);
  }
  return done;
}

interface Issue {
  path: string;
  message: string;
}

function invalid(issues: Issue[]): InputError {
  const lines = issues.map((i) => `${i.path || '(root)'}: ${i.message}`);
  return new InputError('CONTROL_PLANE_INVALID', `invalid control plane: ${lines.join('; ')}`, 400, { issues });
}


/**
 * Validates a control-plane document and replaces every plain write key by its hash (so a
 * stored document never holds a key). Also refuses two sources sharing a key, which the
 * schema cannot see through hashes and ingest could not resolve. Throws an InputError
 * `CONTROL_PLANE_INVALID` (400) naming each bad field.
 *
 * @example
 *   const doc = normalizeControlPlane({ sources: [{ id: 'web', writeKeys: ['wk_0123456789'] }] });
 *   doc.sources[0].writeKeyHashes; // ['sha256:…']
 */
export function normalizeControlPlane(input: unknown): ControlPlaneConfig {
  const parsed = ControlPlaneConfig.safeParse(input);
  if (!parsed.success) {
    throw invalid(
      parsed.error.issues.map((issue) => ({
        path: issue.path.map(String).join('.'),
        message: issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : issue.message,
      })),
    );
  }
  const owner = new Map<string, string>();
  const issues: Issue[] = [];
  const sources = parsed.data.sources.map((source, i) => {
    const writeKeyHashes = [...new Set([...source.writeKeyHashes, ...source.writeKeys.map(hashWriteKeySync)])];
    for (const hash of writeKeyHashes) {
      const other = owner.get(hash);
      // The key itself stays out of the message: it may reach a log or an HTTP answer.
      if (other !== undefined && other !== source.id) issues.push({ path: `sources.${i}.writeKeys`, message: `shares a write key with source "${other}"` });
      owner.set(hash, source.id);
    }
    return { ...source, writeKeys: [], writeKeyHashes };
  });
  if (issues.length > 0) throw invalid(issues);
  return { ...parsed.data, sources };
}

/** JSON with object keys sorted at every level, so equal documents hash equally. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function seedHashOf(doc: ControlPlaneConfig): string {
  return `sha256:${createHash('sha256').update(canonicalJson(doc), 'utf8').digest('hex')}`;
}

interface VersionRow {
  version: string;
  doc: unknown;
}

/**
 * The newest stored version, or the empty config at version 0. Stored documents go through
 * the schema again, which fills in defaults added since they were written.
 */
async function readLatest(q: Queryable): Promise<{ version: number; doc: ControlPlaneConfig }> {
  const { rows } = await q.query<VersionRow>('select version, doc from control_plane_versions order by version desc limit 1');
  const row = rows[0];
  if (!row) return { version: 0, doc: structuredClone(EMPTY) };
  const version = Number(row.version);
  const parsed = ControlPlaneConfig.safeParse(row.doc);
  if (!parsed.success) {
    throw new OrreryError('CONTROL_PLANE_CORRUPT', `control plane version ${version} does not match the schema: ${parsed.error.message}`, {
      details: { version },
    });
  }
  return { version, doc: parsed.data };
}

async function insertVersion(
  tx: Queryable,
  doc: ControlPlaneConfig,
  meta: { seedHash: string | null; note: string | null; channel: string },
): Promise<number> {
  // Postgres casts the text to jsonb itself: an INSERT's VALUES take the column's type.
  const { rows } = await tx.query<{ version: string }>(
    'insert into control_plane_versions (doc, seed_hash, note) values ($1, $2, $3) returning version',
    [JSON.stringify(doc), meta.seedHash, meta.note],
  );
  const version = Number(rows[0]!.version);
  // Inside the transaction: delivered on commit, and never for a rollback (Postgres's NOTIFY;
  // the SQLite store's own, in process).
  if (isNotifying(tx)) tx.notify(meta.channel, String(version));
  else await tx.query('select pg_notify($1, $2)', [meta.channel, String(version)]);
  return version;
}

function isNotifying(tx: Queryable): tx is SqliteQueryable {
  return typeof (tx as Partial<SqliteQueryable>).notify === 'function';
}

/**
 * Applies the YAML seed when the database holds no version yet, or when the seed changed
 * since it was last applied (compared by a hash of the normalised seed). So edits made
 * through the API survive restarts, until someone edits the YAML itself, which then wins
 * as a whole. Safe when several processes start together. Returns the version now current.
 *
 * @example
 *   const version = await seedControlPlane(store, { sources: config.sources, destinations: config.destinations, routes: config.routes }, logger);
 */
export async function seedControlPlane(
  store: Store,
  seed: ControlPlaneConfig,
  logger: Logger,
  opts: { channel?: string } = {},
): Promise<number> {
  const log = logger.child({ component: 'control-plane' });
  let doc: ControlPlaneConfig;
  try {
    doc = normalizeControlPlane(seed);
  } catch (err) {
    // The seed is the config file: a bad one stops the start, like any bad config.
    throw new ConfigError(`control-plane seed: ${(err as Error).message}`, { cause: err, details: (err as OrreryError).details });
  }
  const seedHash = seedHashOf(doc);
  await ensureMigrated(store);
  return store.transaction(async (tx) => {
    await lockControlPlane(store, tx);
    const { rows } = await tx.query<{ latest: string | null; seed_version: string | null; seed_hash: string | null }>(
      `select (select max(version) from control_plane_versions) as latest,
              (select max(version) from control_plane_versions where seed_hash is not null) as seed_version,
              (select seed_hash from control_plane_versions where seed_hash is not null order by version desc limit 1) as seed_hash`,
    );
    const latest = Number(rows[0]?.latest ?? 0);
    const lastSeedHash = rows[0]?.seed_hash ?? null;
    const lastSeedVersion = Number(rows[0]?.seed_version ?? 0);
    if (latest > 0 && lastSeedHash === seedHash) {
      log.debug({ version: latest, seedVersion: lastSeedVersion }, 'control-plane seed unchanged; keeping the stored config');
      return latest;
    }
    const version = await insertVersion(tx, doc, { seedHash, note: 'seed', channel: opts.channel ?? CONTROL_PLANE_CHANNEL });
    if (latest === 0) log.info({ version }, 'control plane seeded from the config file');
    else if (latest > lastSeedVersion) {
      // Someone changed the config through the API since the last seed; say loudly that it is gone.
      log.warn({ version, replaced: latest, lastSeedVersion }, 'control-plane seed changed: it replaces the edits made through the API');
    } else log.info({ version, previous: latest }, 'control-plane seed changed: applied');
    return version;
  });
}

export interface UpdateControlPlaneOptions {
  /** Optimistic concurrency: fail with CONTROL_PLANE_CONFLICT unless this is still the current version. */
  expectedVersion?: number;
  /** Why, for the audit trail (e.g. who changed it through which API call). */
  note?: string;
  channel?: string;
}

/**
 * Read-modify-write of the control plane, in one transaction under a lock. `mutate` gets a
 * private copy of the current document (write keys as hashes) and returns the new one; plain
 * keys it adds are hashed before storing. Throws InputError `CONTROL_PLANE_INVALID` (400)
 * when the result is invalid and `CONTROL_PLANE_CONFLICT` (409) when `expectedVersion` is
 * stale; nothing is written then. Returns the new snapshot; other processes get it by NOTIFY.
 *
 * @example
 *   const snap = await updateControlPlane(store, (doc) => ({ ...doc, routes: [...doc.routes, route] }), { expectedVersion: 4, note: 'api: add route' });
 */
export async function updateControlPlane(
  store: Store,
  mutate: (doc: ControlPlaneConfig) => ControlPlaneConfig,
  opts: UpdateControlPlaneOptions = {},
): Promise<ControlPlaneSnapshot> {
  await ensureMigrated(store);
  return store.transaction(async (tx) => {
    await lockControlPlane(store, tx);
    const current = await readLatest(tx);
    if (opts.expectedVersion !== undefined && opts.expectedVersion !== current.version) {
      throw new InputError(
        'CONTROL_PLANE_CONFLICT',
        `the control plane is at version ${current.version}, not ${opts.expectedVersion}: re-read it and apply the change again`,
        409,
        { expectedVersion: opts.expectedVersion, currentVersion: current.version },
      );
    }
    const doc = normalizeControlPlane(mutate(structuredClone(current.doc)));
    const version = await insertVersion(tx, doc, { seedHash: null, note: opts.note ?? null, channel: opts.channel ?? CONTROL_PLANE_CHANNEL });
    return snapshotOf(version, doc);
  });
}

export interface PgControlPlaneOptions {
  store: Store;
  logger: Logger;
  /** Safety net for a lost NOTIFY: how often to check the version anyway. Default 30 s. */
  pollMs?: number;
  channel?: string;
}

/**
 * The control plane read from Postgres: the current version at start (empty, version 0, when
 * none), then a reload whenever a NOTIFY, a reconnect of the listener, or the periodic check
 * shows that the version changed. Subscribers get each new snapshot; snapshots are frozen.
 *
 * @example
 *   await seedControlPlane(store, seed, logger);
 *   const controlPlane = await createPgControlPlane({ store, logger });
 *   controlPlane.subscribe((snap) => router.use(snap));
 */
export async function createPgControlPlane(opts: PgControlPlaneOptions): Promise<ControlPlaneSource> {
  const { store } = opts;
  const channel = opts.channel ?? CONTROL_PLANE_CHANNEL;
  const log = opts.logger.child({ component: 'control-plane' });
  await ensureMigrated(store);

  const first = await readLatest(store);
  let snapshot = snapshotOf(first.version, first.doc);
  const subscribers = new Set<(snapshot: ControlPlaneSnapshot) => void>();
  let closed = false;
  let running: Promise<void> | undefined;
  let again = false;

  async function reload(reason: string): Promise<void> {
    try {
      // The cheap check first: the periodic one almost always finds nothing new.
      const { rows } = await store.query<{ version: string | null }>('select max(version) as version from control_plane_versions');
      if (Number(rows[0]?.version ?? 0) === snapshot.version) return;
      const latest = await readLatest(store);
      if (closed || latest.version === snapshot.version) return;
      const previous = snapshot.version;
      snapshot = snapshotOf(latest.version, latest.doc);
      log.info({ version: snapshot.version, previous, reason }, 'control plane changed');
      for (const onChange of [...subscribers]) {
        try {
          onChange(snapshot);
        } catch (err) {
          log.error({ err, version: snapshot.version }, 'a control-plane subscriber failed');
        }
      }
    } catch (err) {
      // Keep serving the last good snapshot; the next notify or check tries again.
      log.warn({ err, reason, version: snapshot.version }, 'control-plane reload failed; keeping the current version');
    }
  }

  /** One reload at a time, in order; triggers that arrive meanwhile fold into one more pass. */
  function refresh(reason: string): Promise<void> {
    if (closed) return Promise.resolve();
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await reload(reason);
        } while (again && !closed);
      } finally {
        running = undefined;
      }
    })();
    return running;
  }

  const stopListening = await store.listen(
    channel,
    (payload) => {
      if (Number(payload) !== snapshot.version) void refresh('notify');
    },
    () => {
      log.info({ channel }, 'control-plane listener reconnected; checking for missed changes');
      void refresh('reconnect');
    },
  );
  // A change committed between the first read and the LISTEN would otherwise wait for the poll.
  await refresh('start');
  const timer = setInterval(() => void refresh('poll'), opts.pollMs ?? 30_000);
  timer.unref();
  log.info({ version: snapshot.version, channel, store: store.kind }, `control plane loaded from the store (${store.kind})`);

  return {
    current() {
      return snapshot;
    },
    subscribe(onChange) {
      subscribers.add(onChange);
      return () => {
        subscribers.delete(onChange);
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      subscribers.clear();
      await stopListening();
      await running;
    },
  };
}
