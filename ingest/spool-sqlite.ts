import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { OrreryError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { Spool, SpoolRecord } from './spool.ts';

/**
 * The spool (./spool.ts's contract) in one SQLite file (node:sqlite, WAL, `synchronous=FULL`:
 * an append resolves once its transaction is committed and fsync'd). Appends made in one
 * turn of the event loop share one transaction. Records are rows in append order; a commit
 * deletes the rows it covers, so a restart replays exactly what was not committed.
 *
 * Issue #19 asks to measure it against the segment-file spool before it replaces it:
 * `npm run bench -- spool` (append latency under concurrent appenders, replay rate into
 * Kafka). The commit runs on the main thread (node:sqlite is synchronous), unlike the file
 * spool's fsync on libuv's pool: the bench is what says whether that costs.
 *
 * @example const spool = createSqliteSpool({ file: '.orrery/spool.sqlite', maxBytes: 1 << 30, logger });
 */
export function createSqliteSpool(opts: { file: string; maxBytes: number; logger: Logger }): Spool {
  mkdirSync(dirname(opts.file), { recursive: true });
  const db = new DatabaseSync(opts.file);
  db.exec(`
    PRAGMA journal_mode=WAL;
    PRAGMA synchronous=FULL;
    CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY, key TEXT, value TEXT NOT NULL);
  `);
  const insert = db.prepare('INSERT INTO spool (key, value) VALUES (?, ?)');
  const select = db.prepare('SELECT seq, key, value FROM spool ORDER BY seq LIMIT ?');
  const remove = db.prepare('DELETE FROM spool WHERE seq <= ?');
  const totals = db.prepare('SELECT count(*) AS n, coalesce(sum(length(value) + coalesce(length(key), 0)), 0) AS bytes FROM spool').get() as { n: number; bytes: number };
  let records = Number(totals.n);
  let bytes = Number(totals.bytes);
  if (records > 0) opts.logger.info({ records, bytes }, 'spool: records not yet handed to the bus, from before the restart');

  const sizeOf = (r: SpoolRecord) => Buffer.byteLength(r.value) + (r.key === null ? 0 : Buffer.byteLength(r.key));
  let queued: Array<{ records: SpoolRecord[]; bytes: number; resolve: () => void; reject: (err: unknown) => void }> = [];
  let scheduled = false;
  let closed = false;

  function flush(): void {
    scheduled = false;
    const calls = queued;
    queued = [];
    if (calls.length === 0) return;
    try {
      db.exec('BEGIN IMMEDIATE');
      try {
        for (const call of calls) for (const r of call.records) insert.run(r.key, r.value);
        db.exec('COMMIT');
      } catch (err) {
        db.exec('ROLLBACK');
        throw err;
      }
    } catch (err) {
      for (const call of calls) {
        bytes -= call.bytes;
        records -= call.records.length;
        call.reject(new OrreryError('SPOOL_WRITE_FAILED', `spool: ${(err as Error).message}`, { retriable: true, status: 503, cause: err }));
      }
      return;
    }
    for (const call of calls) call.resolve();
  }

  return {
    append(batch) {
      if (closed) return Promise.reject(new OrreryError('SPOOL_CLOSED', 'the spool is closed', { retriable: true, status: 503 }));
      if (batch.length === 0) return Promise.resolve();
      const size = batch.reduce((n, r) => n + sizeOf(r), 0);
      if (bytes + size > opts.maxBytes) {
        return Promise.reject(new OrreryError('SPOOL_FULL', `the spool holds ${bytes} bytes; ${size} more would pass its limit of ${opts.maxBytes}`, { retriable: true, status: 503 }));
      }
      // Counted at once, so that appends queued in this turn cannot pass maxBytes together.
      bytes += size;
      records += batch.length;
      return new Promise<void>((resolve, reject) => {
        queued.push({ records: batch, bytes: size, resolve, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
    async peek(max) {
      const rows = select.all(max) as Array<{ seq: number; key: string | null; value: string }>;
      return { records: rows.map((r) => ({ key: r.key, value: r.value })), cursor: rows.length > 0 ? { seq: rows.at(-1)!.seq, records: rows.length, bytes: rows.reduce((n, r) => n + sizeOf(r), 0) } : undefined };
    },
    async commit(cursor) {
      if (cursor === undefined) return;
      const c = cursor as { seq: number; records: number; bytes: number };
      const deleted = Number(remove.run(c.seq).changes);
      // A cursor committed twice deletes nothing the second time.
      if (deleted > 0) {
        records -= deleted;
        bytes -= c.bytes;
      }
    },
    depth() {
      return { records, bytes };
    },
    async close() {
      if (closed) return;
      closed = true;
      flush();
      db.close();
    },
  };
}
