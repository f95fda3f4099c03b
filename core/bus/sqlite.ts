import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { OrreryError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { existsSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { createEmbeddedBus, createLogBus } from './embedded.ts';
import type { Bus, IncomingMessage } from './types.ts';

export interface SqliteBusOptions {
  /** The SQLite database file; created when missing. One process at a time: `<file>.lock` guards it. */
  file: string;
  logger: Logger;
  pollIntervalMs?: number;
  maxBatchMessages?: number;
}

export interface SqliteRow {
  topic: string;
  partition: number;
  offset: number;
  ts: number;
  key: string | null;
  value: Buffer;
  headers: Record<string, string>;
}

/** What `SqliteLog.load` fills a log with. */
export interface LogLoader {
  topic(name: string, partitions: number): void;
  rows(rows: SqliteRow[]): void;
  offsets(group: string, topic: string, committed: Map<number, number>): void;
}

/**
 * The storage of the log bus in one SQLite file (node:sqlite, WAL, synchronous=FULL): topics
 * as rows of `topics`, records in `messages`, committed offsets in `offsets`. The consumer
 * groups, group commit of produce calls and retention are embedded.ts's own.
 */
export class SqliteLog {
  private readonly db: DatabaseSync;
  private readonly insert: StatementSync;
  private readonly select: StatementSync;
  private readonly upsert: StatementSync;

  constructor(file: string) {
    this.db = new DatabaseSync(file);
    this.db.exec(`
      PRAGMA journal_mode=WAL;
      PRAGMA synchronous=FULL;
      PRAGMA busy_timeout=5000;
      CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS messages (topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
        ts INTEGER NOT NULL, key TEXT, value BLOB NOT NULL, headers TEXT NOT NULL, PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS offsets (grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
        PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID;
    `);
    this.insert = this.db.prepare('INSERT INTO messages (topic, partition, offset, ts, key, value, headers) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.select = this.db.prepare('SELECT offset, ts, key, value, headers FROM messages WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?');
    this.upsert = this.db.prepare('INSERT INTO offsets (grp, topic, partition, next) VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET next = excluded.next');
  }

  topics(): Array<{ name: string; partitions: number }> {
    return this.db.prepare('SELECT name, partitions FROM topics ORDER BY name').all() as Array<{ name: string; partitions: number }>;
  }

  /** Lowest and next offset of each partition that holds records. */
  bounds(topic: string): Map<number, { low: number; end: number }> {
    const rows = this.db
      .prepare('SELECT partition, MIN(offset) AS low, MAX(offset) + 1 AS "end" FROM messages WHERE topic = ? GROUP BY partition')
      .all(topic) as Array<{ partition: number; low: number; end: number }>;
    return new Map(rows.map((r) => [r.partition, { low: r.low, end: r.end }]));
  }

  groups(topic: string): Map<string, Map<number, number>> {
    const found = new Map<string, Map<number, number>>();
    for (const r of this.db.prepare('SELECT grp, partition, next FROM offsets WHERE topic = ?').all(topic) as Array<{ grp: string; partition: number; next: number }>) {
      let g = found.get(r.grp);
      if (!g) found.set(r.grp, (g = new Map()));
      g.set(r.partition, r.next);
    }
    return found;
  }

  createTopic(name: string, partitions: number): void {
    this.db.prepare('INSERT OR IGNORE INTO topics (name, partitions) VALUES (?, ?)').run(name, partitions);
  }

  /** All rows in one transaction: one fsync for every produce call of a flush. */
  append(rows: SqliteRow[]): void {
    this.transaction(() => {
      for (const r of rows) this.insert.run(r.topic, r.partition, r.offset, r.ts, r.key, r.value, JSON.stringify(r.headers));
    });
  }

  read(topic: string, partition: number, from: number, max: number, maxBytes: number): IncomingMessage[] {
    const rows = this.select.all(topic, partition, from, max) as Array<{ offset: number; ts: number; key: string | null; value: Uint8Array; headers: string }>;
    const out: IncomingMessage[] = [];
    let bytes = 0;
    for (const r of rows) {
      bytes += r.value.length;
      if (out.length > 0 && bytes > maxBytes) break;
      const value = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.length);
      out.push({ topic, partition, offset: String(r.offset), key: r.key, value, headers: JSON.parse(r.headers) as Record<string, string>, timestamp: r.ts });
    }
    return out;
  }

  commit(group: string, topic: string, committed: Map<number, number>): void {
    this.transaction(() => {
      for (const [p, next] of committed) this.upsert.run(group, topic, p, next);
    });
  }

  trim(topic: string, partition: number, floor: number): void {
    this.db.prepare('DELETE FROM messages WHERE topic = ? AND partition = ? AND offset < ?').run(topic, partition, floor);
  }

  /**
   * Fills an empty log from another one in one all-or-nothing transaction: the migration
   * from the segment-file log (./embedded.ts, `copyTo`). Records keep their offsets.
   */
  async load(fill: (into: LogLoader) => Promise<void>): Promise<void> {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      await fill({
        topic: (name, partitions) => this.createTopic(name, partitions),
        rows: (rows) => {
          for (const r of rows) this.insert.run(r.topic, r.partition, r.offset, r.ts, r.key, r.value, JSON.stringify(r.headers));
        },
        offsets: (group, topic, committed) => {
          for (const [p, next] of committed) this.upsert.run(group, topic, p, next);
        },
      });
      this.db.exec('COMMIT');
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }

  private transaction(fn: () => void): void {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      fn();
      this.db.exec('COMMIT');
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
  }
}

/**
 * The log bus of embedded.ts on a SQLite file instead of segment files.
 *
 * @example
 *   const bus = await createSqliteBus({ file: '.orrery/bus.db', logger });
 */
export function createSqliteBus(opts: SqliteBusOptions): Promise<Bus> {
  return createLogBus({ ...opts, dir: opts.file }, () => new SqliteLog(opts.file));
}

/**
 * Moves a segment-file log (./embedded.ts, the embedded default's bus before this one) into
 * the SQLite log at `file`: every retained record with its offset, and every group's
 * committed offsets, in one transaction, so consumers go on exactly where they were.
 *
 * The directory is renamed `<dir>.migrating` first, and `<dir>.migrated` once the copy is
 * committed (kept, not deleted: the log says so). A start that stopped in between finds
 * `<dir>.migrating`: an empty SQLite log means the copy did not commit and is done again;
 * a filled one means it did. A segment-file log beside an already filled SQLite log (an
 * older Orrery run again on this data dir) is refused: two logs cannot be merged, and
 * neither is dropped silently.
 */
export async function migrateSegmentLog(opts: { from: string; file: string; logger: Logger }): Promise<{ topics: number; records: number } | undefined> {
  const moving = `${opts.from}.migrating`;
  if (existsSync(opts.from)) {
    if (existsSync(moving) || filled(opts.file)) {
      throw new OrreryError(
        'BUS_MIGRATION_CONFLICT',
        `${opts.from} holds an on-disk log from an older Orrery, and ${existsSync(moving) ? moving : opts.file} holds another; they cannot be merged: move one of them out of the data dir`,
        { retriable: false },
      );
    }
    await rename(opts.from, moving);
  }
  if (!existsSync(moving)) return undefined;
  const log = opts.logger.child({ component: 'bus', adapter: 'sqlite' });
  let copied: { topics: number; records: number } | undefined;
  if (!filled(opts.file)) {
    const legacy = await createEmbeddedBus({ dir: moving, logger: opts.logger });
    try {
      const target = new SqliteLog(opts.file);
      try {
        copied = await legacy.copyTo(target);
      } finally {
        target.close();
      }
    } finally {
      await legacy.close();
    }
  }
  let kept = `${opts.from}.migrated`;
  if (existsSync(kept)) kept = `${kept}-${Date.now()}`;
  await rename(moving, kept);
  log.info(
    { from: opts.from, to: opts.file, kept, ...copied },
    `bus: moved the on-disk log at ${opts.from} into ${opts.file}${copied ? ` (${copied.records} records, ${copied.topics} topics, committed offsets kept)` : ''}; the old directory is kept at ${kept}, and can be deleted`,
  );
  return copied;
}

/** Whether the SQLite log at `file` holds any topic. */
function filled(file: string): boolean {
  if (!existsSync(file)) return false;
  const db = new SqliteLog(file);
  try {
    return db.topics().length > 0;
  } finally {
    db.close();
  }
}
