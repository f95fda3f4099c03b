import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Envelope } from '../core/envelope.ts';
import { migrate } from '../core/store/migrate.ts';
import { dialectOf, type Queryable, type Store } from '../core/store/types.ts';
import { ensureDeadLetterTable, insertDeadLetters, type NewDeadLetter } from './dead-letters.ts';

/**
 * The park: where a user's events wait, durably, while the destination keeps refusing one
 * of them (with a retriable error) and takes everyone else's. Parking that user's events
 * lets the batch's offsets commit, so the other users of its partition keep flowing; the
 * parked events are retried from here, in order, and every later event of a parked user
 * joins them at the back until the park is empty again. RudderStack's router does the
 * same for a failing user ("barrier"), with its jobs in Postgres.
 *
 * A parked user is drained by one process at a time: a lease on its row, renewed while
 * it drains and given up on a clean stop, so another member of the group takes over
 * after `leaseMs` when one dies.
 */
function parkTables(t: { id: string; time: string; now: string }): string {
  return `create table if not exists sink_parked_users (
      destination_id text not null,
      user_key text not null,
      parked_at ${t.time} not null default ${t.now},
      owner text,
      lease_until ${t.time},
      primary key (destination_id, user_key)
    );
    create table if not exists sink_parked_events (
      id ${t.id},
      destination_id text not null,
      user_key text not null,
      dedup_key text not null,
      event text not null,
      attempts int not null default 0,
      first_attempt_at ${t.time},
      last_error text,
      unique (destination_id, dedup_key)
    );
    create index if not exists sink_parked_events_user on sink_parked_events (destination_id, user_key, id);`;
}

export const PARK_MIGRATIONS = [
  {
    id: '0210_sink_park',
    sql: parkTables({ id: 'bigserial primary key', time: 'timestamptz', now: 'now()' }),
    // Times as ISO-8601 text (now(): see core/store/sqlite.ts), which sorts and compares as time.
    sqlite: parkTables({ id: 'integer primary key autoincrement', time: 'text', now: '(now())' }),
  },
];

/** A parked event with what its tries so far left: the age limit counts from the first. */
export interface ParkedEvent {
  id: number;
  event: Envelope;
  attempts: number;
  firstAttemptAt: number | undefined;
  lastError: string | undefined;
}

export interface ParkItem {
  event: Envelope;
  attempts: number;
  firstAttemptAt: number | undefined;
  lastError?: string | undefined;
}

export interface Park {
  /** How long a drainer's claim on a parked user holds unrenewed. */
  readonly leaseMs: number;
  /** Of these users, those parked now (a plain read: only the park's drainer unparks). */
  parkedAmong(users: string[]): Promise<Set<string>>;
  /**
   * Appends each user's events behind its parked ones, if that user is still parked (the
   * row lock keeps the drainer from unparking it meanwhile). Returns the users appended
   * to; the others were unparked in between and are delivered as usual.
   */
  appendIfParked(byUser: Map<string, Envelope[]>): Promise<Set<string>>;
  /** Parks a user with these events (its retrying one first); idempotent per messageId. */
  park(user: string, items: ParkItem[]): Promise<void>;
  /** Takes (or renews) the lease on up to `limit` parked users, its own first; returns them. */
  claim(limit: number): Promise<string[]>;
  /** The oldest `limit` events of a parked user. */
  head(user: string, limit: number): Promise<ParkedEvent[]>;
  /** Gone from the park: delivered (or found delivered already). */
  remove(id: number): Promise<void>;
  /** A failed try, remembered so a restart keeps counting from it. */
  failed(id: number, attempts: number, firstAttemptAt: number, lastError: string): Promise<void>;
  /** Given up on: the dead letter is recorded and the event leaves the park in one transaction. */
  deadLetter(id: number, letter: NewDeadLetter): Promise<void>;
  /** Unparks the user if it has no event left (under its row lock); true when it did. */
  unparkIfEmpty(user: string): Promise<boolean>;
  /** Gives the leases of this process up (a clean stop). */
  release(): Promise<void>;
  /** Parked users and events for this destination (the cap, metrics). */
  size(): Promise<{ users: number; events: number }>;
}

const migrated = new WeakSet<Store>();

export async function ensureParkTables(store: Store): Promise<void> {
  if (migrated.has(store)) return;
  await migrate(store, PARK_MIGRATIONS);
  migrated.add(store);
}

/**
 * The park of one destination in the store.
 *
 * @example const park = createPark(store, 'hook'); await park.park('src:u1', [{ event, attempts: 3, firstAttemptAt }]);
 */
export function createPark(store: Store, destinationId: string, opts: { leaseMs?: number; owner?: string } = {}): Park {
  const leaseMs = opts.leaseMs ?? 15_000;
  const owner = opts.owner ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  // SQLite: an array binds as JSON text (json_each reads it), and no lock clauses: its store
  // runs one transaction at a time (BEGIN IMMEDIATE on one connection), which is the lock.
  const sqlite = dialectOf(store) === 'sqlite';
  const amongUsers = sqlite ? 'user_key in (select value from json_each($2))' : 'user_key = any($2::text[])';
  let ready: Promise<void> | undefined;
  const ensure = () => (ready ??= ensureParkTables(store).catch((err: unknown) => {
    ready = undefined;
    throw err;
  }));

  async function insertEvents(q: Queryable, user: string, items: ParkItem[]): Promise<void> {
    for (let i = 0; i < items.length; i += 200) {
      const values: unknown[] = [];
      const rows = items.slice(i, i + 200).map((it, j) => {
        values.push(destinationId, user, `${it.event.sourceId}:${it.event.messageId}`, JSON.stringify(it.event), it.attempts, it.firstAttemptAt === undefined ? null : new Date(it.firstAttemptAt), it.lastError?.slice(0, 2000) ?? null);
        const b = j * 7;
        return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}, $${b + 6}, $${b + 7})`;
      });
      await q.query(
        `insert into sink_parked_events (destination_id, user_key, dedup_key, event, attempts, first_attempt_at, last_error)
         values ${rows.join(', ')} on conflict (destination_id, dedup_key) do nothing`,
        values,
      );
    }
  }

  return {
    leaseMs,
    async parkedAmong(users) {
      if (users.length === 0) return new Set();
      await ensure();
      const { rows } = await store.query<{ user_key: string }>(
        `select user_key from sink_parked_users where destination_id = $1 and ${amongUsers}`,
        [destinationId, users],
      );
      return new Set(rows.map((r) => r.user_key));
    },
    async appendIfParked(byUser) {
      if (byUser.size === 0) return new Set();
      await ensure();
      return store.transaction(async (tx) => {
        const { rows } = await tx.query<{ user_key: string }>(
          `select user_key from sink_parked_users where destination_id = $1 and ${amongUsers}${sqlite ? '' : ' for share'}`,
          [destinationId, [...byUser.keys()]],
        );
        const still = new Set(rows.map((r) => r.user_key));
        for (const user of still) {
          await insertEvents(tx, user, byUser.get(user)!.map((event) => ({ event, attempts: 0, firstAttemptAt: undefined })));
        }
        return still;
      });
    },
    async park(user, items) {
      await ensure();
      await store.transaction(async (tx) => {
        await tx.query('insert into sink_parked_users (destination_id, user_key) values ($1, $2) on conflict do nothing', [destinationId, user]);
        await insertEvents(tx, user, items);
      });
    },
    async claim(limit) {
      await ensure();
      if (sqlite) {
        // The times from this process's clock, as ISO text (one process holds a SQLite file);
        // users parked in the same millisecond, in the order parked (rowid).
        const now = Date.now();
        const { rows } = await store.query<{ user_key: string }>(
          `update sink_parked_users set owner = $2, lease_until = $3
            where (destination_id, user_key) in (
              select destination_id, user_key from sink_parked_users
               where destination_id = $1 and (owner = $2 or lease_until is null or lease_until < $4)
               order by (owner is $2) desc, parked_at, rowid limit $5)
            returning user_key`,
          [destinationId, owner, new Date(now + leaseMs), new Date(now), limit],
        );
        return rows.map((r) => r.user_key);
      }
      // The times from the database's clock, which every replica shares.
      const { rows } = await store.query<{ user_key: string }>(
        `update sink_parked_users set owner = $2, lease_until = now() + ($3::int * interval '1 millisecond')
          where (destination_id, user_key) in (
            select destination_id, user_key from sink_parked_users
             where destination_id = $1 and (owner = $2 or lease_until is null or lease_until < now())
             order by (owner is not distinct from $2) desc, parked_at limit $4 for update skip locked)
          returning user_key`,
        [destinationId, owner, leaseMs, limit],
      );
      return rows.map((r) => r.user_key);
    },
    async head(user, limit) {
      await ensure();
      const { rows } = await store.query<{ id: string; event: string; attempts: number; first_attempt_at: Date | null; last_error: string | null }>(
        'select id, event, attempts, first_attempt_at, last_error from sink_parked_events where destination_id = $1 and user_key = $2 order by id limit $3',
        [destinationId, user, limit],
      );
      return rows.map((r) => ({
        id: Number(r.id),
        event: JSON.parse(r.event) as Envelope,
        attempts: r.attempts,
        firstAttemptAt: r.first_attempt_at ? new Date(r.first_attempt_at).getTime() : undefined,
        lastError: r.last_error ?? undefined,
      }));
    },
    async remove(id) {
      await store.query('delete from sink_parked_events where id = $1', [id]);
    },
    async failed(id, attempts, firstAttemptAt, lastError) {
      await store.query('update sink_parked_events set attempts = $2, first_attempt_at = $3, last_error = $4 where id = $1', [id, attempts, new Date(firstAttemptAt), lastError.slice(0, 2000)]);
    },
    async deadLetter(id, letter) {
      await ensureDeadLetterTable(store);
      await store.transaction(async (tx) => {
        await insertDeadLetters(tx, [letter], dialectOf(store));
        await tx.query('delete from sink_parked_events where id = $1', [id]);
      });
    },
    async unparkIfEmpty(user) {
      return store.transaction(async (tx) => {
        const locked = await tx.query(`select 1 from sink_parked_users where destination_id = $1 and user_key = $2${sqlite ? '' : ' for update'}`, [destinationId, user]);
        if (locked.rows.length === 0) return true;
        const left = await tx.query('select 1 from sink_parked_events where destination_id = $1 and user_key = $2 limit 1', [destinationId, user]);
        if (left.rows.length > 0) return false;
        await tx.query('delete from sink_parked_users where destination_id = $1 and user_key = $2', [destinationId, user]);
        return true;
      });
    },
    async release() {
      if (!ready) return;
      await store.query('update sink_parked_users set owner = null, lease_until = null where destination_id = $1 and owner = $2', [destinationId, owner]);
    },
    async size() {
      await ensure();
      const { rows } = await store.query<{ users: string; events: string }>(
        `select (select count(*) from sink_parked_users where destination_id = $1) as users,
                (select count(*) from sink_parked_events where destination_id = $1) as events`,
        [destinationId],
      );
      return { users: Number(rows[0]?.users ?? 0), events: Number(rows[0]?.events ?? 0) };
    },
  };
}
