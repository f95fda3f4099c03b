import { mkdir, open, readdir, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { OrreryError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';

export interface SpoolRecord {
  key: string | null;
  value: string;
}

export interface Spool {
  /**
   * Appends records durably (written and fsync'd) before resolving. Concurrent appends are
   * group-committed: one write + one fsync for everything queued meanwhile. Rejects with
   * OrreryError('SPOOL_FULL', …, { retriable: true, status: 503 }) when maxBytes would be
   * exceeded (nothing of that call is written).
   */
  append(records: SpoolRecord[]): Promise<void>;
  /**
   * Oldest records first, at most `max` records, without removing them; [] when empty.
   * Returns an opaque cursor to pass to commit().
   */
  peek(max: number): Promise<{ records: SpoolRecord[]; cursor: unknown }>;
  /**
   * Marks everything up to the cursor as delivered; frees whole segments when fully
   * delivered (progress persisted so a restart does not replay far back; replaying a little
   * again after a crash is acceptable: at-least-once).
   */
  commit(cursor: unknown): Promise<void>;
  /** Records not yet committed (count) and bytes on disk. */
  depth(): { records: number; bytes: number };
  close(): Promise<void>;
}

export interface SpoolOptions {
  dir: string;
  /** Refuse appends (SPOOL_FULL) that would take the segments on disk past this. */
  maxBytes: number;
  /** Rotate to a new segment file past this size. Default 16 MiB (at most maxBytes / 8). */
  segmentBytes?: number;
  logger: Logger;
}

const DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024;
const READ_CHUNK_BYTES = 256 * 1024;
const HEAD_FILE = 'head.json';
const SEGMENT_NAME = /^(\d{12})\.seg$/;
const NEWLINE = 0x0a;
const HEX8 = /^[0-9a-f]{8}$/;

interface Segment {
  id: number;
  path: string;
  /** Bytes known durable (fsync'd, or found intact on recovery); reads never go past this. */
  size: number;
  /** Open for appends only on the segment being written. */
  handle?: FileHandle;
}

/** A position in the log: a byte offset inside one segment. */
interface Position {
  segment: number;
  offset: number;
}

/**
 * What peek hands out. `index` is the absolute number of the first record after the
 * cursor, so a commit can tell how many records it settles even when cursors overlap.
 */
interface Cursor extends Position {
  index: number;
}

interface PendingAppend {
  data: Buffer;
  records: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function segmentName(id: number): string {
  return `${String(id).padStart(12, '0')}.seg`;
}

function before(a: Position, b: Position): boolean {
  return a.segment < b.segment || (a.segment === b.segment && a.offset < b.offset);
}

/**
 * One record per line: `<crc32 of json, 8 hex> <json of [key, value]>\n`. JSON escapes
 * every newline inside strings, so `\n` only ever ends a record; the checksum catches a
 * torn or zero-filled tail (and bit rot) that happens to contain a newline.
 */
function encodeRecords(records: SpoolRecord[]): Buffer {
  let text = '';
  for (const r of records) {
    const json = JSON.stringify([r.key, r.value]);
    text += `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`;
  }
  return Buffer.from(text, 'utf8');
}

function decodeLine(line: Buffer): SpoolRecord | undefined {
  if (line.length < 10 || line[8] !== 0x20) return undefined;
  const hex = line.toString('latin1', 0, 8);
  const body = line.subarray(9);
  if (!HEX8.test(hex) || crc32(body) !== Number.parseInt(hex, 16)) return undefined;
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && (typeof v[0] === 'string' || v[0] === null) && typeof v[1] === 'string') {
      return { key: v[0], value: v[1] };
    }
  } catch {
    // fall through: a line that passes the checksum but is not ours is skipped like any bad line
  }
  return undefined;
}

/**
 * Reads whole lines of one segment file between `from` and `to`, at most `max` good
 * records (pushed to `out` when given). `end` is the offset just after the last line taken
 * (good or bad), so bytes after the last newline, a torn write, are never part of it.
 */
async function readLines(
  path: string,
  from: number,
  to: number,
  max: number,
  out: SpoolRecord[] | null,
): Promise<{ end: number; good: number; bad: number }> {
  const fh = await open(path, 'r');
  try {
    let pos = from;
    let good = 0;
    let bad = 0;
    let chunk = READ_CHUNK_BYTES;
    while (good < max && pos < to) {
      const want = Math.min(chunk, to - pos);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, pos);
      if (bytesRead === 0) break;
      let at = 0;
      while (good < max) {
        const nl = buf.indexOf(NEWLINE, at);
        if (nl < 0 || nl >= bytesRead) break;
        const record = decodeLine(buf.subarray(at, nl));
        if (record) {
          good++;
          out?.push(record);
        } else {
          bad++;
        }
        at = nl + 1;
      }
      if (at === 0) {
        // No newline in what is left of the file: a torn last record. Otherwise the line is
        // longer than the chunk, so read more at once.
        if (bytesRead < want || pos + bytesRead >= to) break;
        chunk *= 2;
      }
      pos += at;
    }
    return { end: pos, good, bad };
  } finally {
    await fh.close();
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * The segment-file spool, ingest's spool until ./spool-sqlite.ts replaced it: kept to move
 * the spool of an older data dir in (`openSpool`), and as the baseline of `npm run bench --
 * spool`. The types above are the spool contract both keep.
 *
 * A durable local queue of records on disk: the place ingest puts accepted events while
 * Kafka cannot take them. Segment files (`000000000001.seg`, …) in `dir`, each record one
 * checksummed JSON line; an append resolves only once written and fsync'd, and appends that
 * arrive while one is being written share the next write and fsync (group commit).
 * `head.json` remembers how far delivery got. On start, every segment is scanned; a torn
 * last record (never acknowledged, as never fsync'd) is ignored, and new appends always go
 * to a fresh segment so nothing is ever written after a torn tail.
 *
 * Single reader: one loop peeks and commits; appends may come from anywhere.
 *
 * @example
 *   const spool = await createSpool({ dir: '.orrery/spool', maxBytes: 1 << 30, logger });
 *   await spool.append([{ key: 'src:u1', value: '{…}' }]);
 *   const { records, cursor } = await spool.peek(500);
 *   await bus.produce(Topics.raw, records);
 *   await spool.commit(cursor);
 */
export async function createSpool(opts: SpoolOptions): Promise<Spool> {
  const { dir, maxBytes } = opts;
  const log = opts.logger.child({ spool: dir });
  // Consumed bytes of the segment being written cannot be freed until it rotates, so a
  // segment is kept small next to the budget: at most an eighth of it is stuck that way.
  const segmentBytes = Math.max(1, Math.min(opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES, Math.floor(maxBytes / 8)));

  const segments: Segment[] = [];
  let head: Position = { segment: 0, offset: 0 };
  /** Absolute index of the oldest record not yet committed, and of the next one appended. */
  let headIndex = 0;
  let nextIndex = 0;
  let diskBytes = 0;
  /** Bytes of appends accepted but not yet written: counted against maxBytes already. */
  let reservedBytes = 0;
  let nextSegmentId = 1;
  let queue: PendingAppend[] = [];
  let flushing: Promise<void> | undefined;
  let closed = false;
  let closing: Promise<void> | undefined;

  // Every file mutation and read runs under this one lock, so a commit never deletes a
  // segment that a write or a peek is using.
  let lockTail: Promise<unknown> = Promise.resolve();
  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = lockTail.then(fn);
    lockTail = run.catch(() => {});
    return run;
  }

  await recover();

  async function recover(): Promise<void> {
    await mkdir(dir, { recursive: true });
    try {
      const saved = JSON.parse(await readFile(join(dir, HEAD_FILE), 'utf8')) as Partial<Position>;
      if (Number.isSafeInteger(saved.segment) && Number.isSafeInteger(saved.offset)) {
        head = { segment: saved.segment!, offset: Math.max(0, saved.offset!) };
      }
    } catch (err) {
      // A missing or unreadable head only means replaying from the oldest segment left.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err }, 'spool head unreadable: replaying from the oldest segment');
    }
    const ids = (await readdir(dir))
      .flatMap((name) => {
        const m = SEGMENT_NAME.exec(name);
        return m ? [Number(m[1])] : [];
      })
      .sort((a, b) => a - b);
    for (const id of ids) {
      const path = join(dir, segmentName(id));
      nextSegmentId = Math.max(nextSegmentId, id + 1);
      if (id < head.segment) {
        await unlink(path);
        continue;
      }
      const fh = await open(path, 'r');
      const fileSize = (await fh.stat()).size;
      await fh.close();
      const from = id === head.segment ? Math.min(head.offset, fileSize) : 0;
      const scan = await readLines(path, from, fileSize, Infinity, null);
      if (scan.bad > 0) log.warn({ segment: id, bad: scan.bad }, 'spool segment has damaged records: skipping them');
      if (scan.end < fileSize) log.info({ segment: id, bytes: fileSize - scan.end }, 'ignoring a torn record at the end of a spool segment');
      if (scan.good === 0) {
        await unlink(path);
        continue;
      }
      if (id === head.segment) head = { segment: id, offset: from };
      segments.push({ id, path, size: scan.end });
      diskBytes += scan.end;
      nextIndex += scan.good;
    }
    // Ids only grow, so a head left by a drained spool never points into a new segment.
    nextSegmentId = Math.max(nextSegmentId, head.segment + 1);
    if (nextIndex > 0) log.info({ records: nextIndex, segments: segments.length }, 'spool recovered records from an earlier run');
  }

  async function openNewSegment(): Promise<Segment> {
    const id = nextSegmentId++;
    const path = join(dir, segmentName(id));
    const seg: Segment = { id, path, size: 0, handle: await open(path, 'wx') };
    segments.push(seg);
    // The file's directory entry must be durable too, or a crash can lose the whole file.
    await fsyncDir(dir);
    return seg;
  }

  async function writableSegment(incoming: number): Promise<Segment> {
    const last = segments.at(-1);
    if (last?.handle) {
      if (last.size === 0 || last.size + incoming <= segmentBytes) return last;
      await last.handle.close();
      delete last.handle;
    }
    return openNewSegment();
  }

  async function writeGroup(group: PendingAppend[]): Promise<void> {
    const data = group.length === 1 ? group[0]!.data : Buffer.concat(group.map((p) => p.data));
    const records = group.reduce((n, p) => n + p.records, 0);
    try {
      const seg = await writableSegment(data.length);
      const handle = seg.handle!;
      for (let written = 0; written < data.length; ) {
        const { bytesWritten } = await handle.write(data, written, data.length - written, seg.size + written);
        written += bytesWritten;
      }
      await handle.sync();
      seg.size += data.length;
      diskBytes += data.length;
      nextIndex += records;
      for (const p of group) p.resolve();
    } catch (err) {
      // After a failed write or fsync the file's tail is unknown: stop writing to it. Its
      // durable part stays readable; the next append opens a new segment.
      const last = segments.at(-1);
      if (last?.handle) {
        const handle = last.handle;
        delete last.handle;
        await handle.truncate(last.size).catch(() => {});
        await handle.close().catch(() => {});
      }
      log.error({ err, records }, 'spool write failed');
      const failure = new OrreryError('SPOOL_WRITE_FAILED', `could not write to the spool: ${(err as Error).message}`, {
        retriable: true,
        status: 503,
        cause: err,
      });
      for (const p of group) p.reject(failure);
    } finally {
      reservedBytes -= data.length;
    }
  }

  async function flushLoop(): Promise<void> {
    try {
      // Let the appends made in this turn join the first group, as the Kafka bus does.
      await new Promise((r) => setImmediate(r));
      while (queue.length > 0) {
        const group = queue;
        queue = [];
        await exclusive(() => writeGroup(group));
      }
    } finally {
      flushing = undefined;
    }
  }

  function append(records: SpoolRecord[]): Promise<void> {
    if (closed) return Promise.reject(new OrreryError('SPOOL_CLOSED', 'the spool is closed', { retriable: true, status: 503 }));
    if (records.length === 0) return Promise.resolve();
    const data = encodeRecords(records);
    if (diskBytes + reservedBytes + data.length > maxBytes) {
      return Promise.reject(
        new OrreryError('SPOOL_FULL', `the local spool is full (${diskBytes} of ${maxBytes} bytes on disk)`, {
          retriable: true,
          status: 503,
          details: { maxBytes, bytes: diskBytes + reservedBytes, requested: data.length },
        }),
      );
    }
    reservedBytes += data.length;
    return new Promise<void>((resolve, reject) => {
      queue.push({ data, records: records.length, resolve, reject });
      flushing ??= flushLoop();
    });
  }

  function peek(max: number): Promise<{ records: SpoolRecord[]; cursor: unknown }> {
    if (closed) return Promise.reject(new OrreryError('SPOOL_CLOSED', 'the spool is closed', { retriable: true, status: 503 }));
    return exclusive(async () => {
      const records: SpoolRecord[] = [];
      let pos: Position = head;
      for (const seg of segments) {
        if (records.length >= max) break;
        if (seg.id < head.segment) continue;
        const from = seg.id === head.segment ? head.offset : 0;
        if (from < seg.size) {
          const read = await readLines(seg.path, from, seg.size, max - records.length, records);
          if (read.bad > 0) log.error({ segment: seg.id, bad: read.bad }, 'spool segment has damaged records: skipping them');
          pos = { segment: seg.id, offset: read.end };
        } else {
          pos = { segment: seg.id, offset: seg.size };
        }
      }
      // Read up to the end of what is written: every record is settled by this cursor, even
      // damaged lines that were counted when appended but are skipped when read.
      const last = segments.at(-1);
      const atEnd = last === undefined || (pos.segment === last.id && pos.offset >= last.size);
      const cursor: Cursor = { ...pos, index: atEnd ? nextIndex : headIndex + records.length };
      return { records, cursor };
    });
  }

  function isCursor(c: unknown): c is Cursor {
    const o = c as Partial<Cursor> | null;
    return typeof o === 'object' && o !== null && Number.isSafeInteger(o.segment) && Number.isSafeInteger(o.offset) && Number.isSafeInteger(o.index);
  }

  async function persistHead(): Promise<void> {
    const tmp = join(dir, `${HEAD_FILE}.tmp`);
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(head));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(dir, HEAD_FILE));
  }

  function commit(cursor: unknown): Promise<void> {
    if (closed) return Promise.reject(new OrreryError('SPOOL_CLOSED', 'the spool is closed', { retriable: true, status: 503 }));
    if (!isCursor(cursor)) return Promise.reject(new TypeError('spool.commit: not a cursor from peek()'));
    return exclusive(async () => {
      // A cursor at or behind what is already committed (committed twice, or out of order)
      // changes nothing.
      if (!before(head, cursor)) return;
      head = { segment: cursor.segment, offset: cursor.offset };
      headIndex = Math.max(headIndex, Math.min(cursor.index, nextIndex));
      // Head first: a crash between the two then finds the head past deleted segments, not
      // a head pointing before segments that are gone.
      await persistHead();
      while (segments.length > 0) {
        const seg = segments[0]!;
        const done = seg.id < head.segment || (seg.id === head.segment && head.offset >= seg.size);
        if (!done) break;
        segments.shift();
        if (seg.handle) {
          await seg.handle.close();
          delete seg.handle;
        }
        await unlink(seg.path);
        diskBytes -= seg.size;
      }
    });
  }

  function depth(): { records: number; bytes: number } {
    return { records: nextIndex - headIndex, bytes: diskBytes };
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      closed = true;
      // Appends accepted before close still get written and answered.
      while (flushing) await flushing;
      await exclusive(async () => {
        for (const seg of segments) {
          if (!seg.handle) continue;
          await seg.handle.close();
          delete seg.handle;
        }
      });
    })();
    return closing;
  }

  return { append, peek, commit, depth, close };
}
