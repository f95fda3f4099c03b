import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { openSqlite } from '../sqlite.ts';
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
    this.db = openSqlite(
      file,
      `
      CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS messages (topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
        ts INTEGER NOT NULL, key TEXT, value BLOB NOT NULL, headers TEXT NOT NULL, PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS offsets (grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
        PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    `,
    );
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
   * from the segment-file log (./embedded.ts, `copyTo`). Records keep their offsets. The
   * same transaction records `marker` in `meta`, for the caller to clear once the source is
   * out of the way (`clearMarker`).
   */
  async load(marker: string, fill: (into: LogLoader) => Promise<void>): Promise<void> {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      this.db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(marker, new Date().toISOString());
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

  hasMarker(marker: string): boolean {
    return this.db.prepare('SELECT 1 FROM meta WHERE key = ?').get(marker) !== undefined;
  }

  clearMarker(marker: string): void {
    this.db.prepare('DELETE FROM meta WHERE key = ?').run(marker);
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

/** In `meta` from the copy's commit until the segment-file log is renamed away. */
const MOVING_MARKER = 'moving_segment_log';

/**
 * Moves a segment-file log (./embedded.ts, the embedded default's bus before this one) into
 * the SQLite log at `file`: every retained record with its offset, and every group's
 * committed offsets, in one transaction, so consumers go on exactly where they were. The
 * old directory is then renamed `<dir>.migrated` (kept, not deleted: the log says so).
 *
 * The old log is opened first, which takes its lock: an older Orrery still running on it
 * stops this with BUS_LOCKED before anything moves. The copy's transaction also writes a
 * marker, cleared after the rename: a start that died in between finds the marker and only
 * renames. A segment-file log beside a filled SQLite log and no marker (an older Orrery run
 * again on a migrated data dir) is refused: two logs cannot be merged, and neither is
 * dropped silently.
 */
export async function migrateSegmentLog(opts: { from: string; file: string; logger: Logger }): Promise<{ topics: number; records: number } | undefined> {
  if (!existsSync(opts.from)) return undefined;
  const target = new SqliteLog(opts.file);
  let copied: { topics: number; records: number } | undefined;
  try {
    if (!target.hasMarker(MOVING_MARKER)) {
      if (target.topics().length > 0) {
        throw new OrreryError(
          'BUS_MIGRATION_CONFLICT',
          `${opts.from} holds an on-disk log from an older Orrery, and ${opts.file} holds another; they cannot be merged: move one of them out of the data dir`,
          { retriable: false },
        );
      }
      const legacy = await createEmbeddedBus({ dir: opts.from, logger: opts.logger });
      try {
        copied = await legacy.copyTo(target, MOVING_MARKER);
      } finally {
        await legacy.close();
      }
    }
    let kept = `${opts.from}.migrated`;
    if (existsSync(kept)) kept = `${kept}-${Date.now()}`;
    await rename(opts.from, kept);
    target.clearMarker(MOVING_MARKER);
    opts.logger.child({ component: 'bus', adapter: 'sqlite' }).info(
      { from: opts.from, to: opts.file, kept, ...copied },
      `bus: moved the on-disk log at ${opts.from} into ${opts.file}${copied ? ` (${copied.records} records, ${copied.topics} topics, committed offsets kept)` : ''}; the old directory is kept at ${kept}, and can be deleted`,
    );
  } finally {
    target.close();
  }
  return copied;
}
