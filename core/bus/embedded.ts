import { EventEmitter } from 'node:events';
import { mkdir, open, readdir, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { crc32 } from 'node:zlib';
import { fsyncDir, lockDir } from '../dir-lock.ts';
import { OrreryError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { abortableSleep, backoffDelay, type BackoffPolicy } from '../retry.ts';
import type { TopicSpec } from '../topics.ts';
import { createProgressTracker, type ProgressTracker } from './progress.ts';
import type { SqliteLog, SqliteRow } from './sqlite.ts';
import type { Bus, ConsumeOptions, IncomingBatch, IncomingMessage, OutgoingMessage, Subscription } from './types.ts';

export interface EmbeddedBusOptions {
  /** Where the log lives; created when missing. One process at a time: a lock file guards it. */
  dir: string;
  logger: Logger;
  /**
   * How often an idle consumer looks for new messages on its own. Produces in this process
   * wake consumers at once; the poll is only a safety net. Default 500 ms.
   */
  pollIntervalMs?: number;
  /** A partition's segment file rotates once it would grow past this. Default 64 MiB. */
  segmentBytes?: number;
  /** At most this many messages per handler call. Default 500. */
  maxBatchMessages?: number;
}

const DEFAULT_POLL_INTERVAL_MS = 500;
const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
const DEFAULT_MAX_BATCH_MESSAGES = 500;
/** A batch stops short of this many bytes on disk (it always holds at least one message). */
const MAX_BATCH_BYTES = 8 * 1024 * 1024;
const SCAN_CHUNK_BYTES = 1024 * 1024;

/** u32 body length, u32 crc32 of the body. */
const FRAME_HEAD = 8;
/** u64 offset, i64 timestamp, i32 key length, i32 value length, u32 header count. */
const BODY_FIXED = 28;

const SEGMENT_FILE = /^(\d{20})\.log$/;
const META_FILE = 'meta.json';
const GROUPS_DIR = 'groups';
const LOCK_FILE = '.lock';
const LEGAL_TOPIC = /^[a-zA-Z0-9._-]{1,249}$/;
/** Kafka refuses "." and ".."; ".lock" would be our lock file. */
const RESERVED_TOPICS = new Set(['.', '..', LOCK_FILE]);

const REDELIVERY_BACKOFF: BackoffPolicy = { initialMs: 100, factor: 2, maxMs: 5_000, jitter: 0.2 };

interface Segment {
  /** Offset of the segment's first record; also its file name. */
  base: number;
  path: string;
  /** File position of each whole, durable record, in offset order. */
  positions: number[];
  /** Bytes of whole, durable records; reads never go past this. */
  size: number;
  /** Open only on the segment being appended to. */
  handle?: FileHandle;
}

interface Partition {
  topic: string;
  id: number;
  dir: string;
  segments: Segment[];
  /** Next offset to assign: every offset below it is durable. */
  end: number;
  /** Emitter event fired after an append to this partition became durable. */
  event: string;
  workers: Set<Worker>;
  trimming: boolean;
  /** Lowest offset still stored, on SQLite storage (segment files: the first segment's base). */
  low?: number;
}

interface Topic {
  name: string;
  dir: string;
  partitions: Partition[];
  groups: Map<string, GroupOffsets>;
  roundRobin: number;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** One group's committed offsets on one topic: `dir/<topic>/groups/<group>.json`. */
interface GroupOffsets {
  group: string;
  dir: string;
  file: string;
  /** Partition → next offset to consume. */
  committed: Map<number, number>;
  /** Callers waiting for a write that has not started yet: they all share it. */
  waiting?: Deferred;
  writing?: Promise<void>;
}

interface Group {
  name: string;
  /** In join order, which the assignment follows. */
  members: Member[];
  desired: Map<Partition, Member>;
  /** At most one worker per partition: a new owner starts only once the old one ended. */
  owners: Map<Partition, Worker>;
  /** Where partitions without a committed offset start, fixed when the first member joined. */
  resetAt: Map<Partition, number>;
}

interface Member {
  group: Group;
  topics: string[];
  opts: ConsumeOptions;
  workers: Set<Worker>;
  tracker: ProgressTracker;
  stop: () => Promise<void>;
}

interface Worker {
  member: Member;
  partition: Partition;
  /** Aborted when the partition is revoked or the member stops. */
  revoke: AbortController;
  /** Next offset to read; counts for retention, so a live reader's segment stays. */
  position: number;
  done: Promise<void>;
}

interface PendingProduce {
  topic: Topic;
  messages: OutgoingMessage[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

function deferred(): Deferred {
  let resolveFn!: () => void;
  let rejectFn!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolveFn = res;
    rejectFn = rej;
  });
  return { promise, resolve: resolveFn, reject: rejectFn };
}

function segmentName(base: number): string {
  return `${String(base).padStart(20, '0')}.log`;
}

function unknownTopic(topic: string): OrreryError {
  return new OrreryError('BUS_UNKNOWN_TOPIC', `topic ${topic} does not exist: create it with ensureTopics first`, {
    retriable: false,
    details: { topic },
  });
}

function busClosed(): OrreryError {
  return new OrreryError('BUS_CLOSED', 'the bus is closed', { retriable: false });
}

function assertTopicName(topic: string): void {
  if (!LEGAL_TOPIC.test(topic) || RESERVED_TOPICS.has(topic)) {
    throw new OrreryError('BUS_INVALID_TOPIC', `"${topic}" is not a valid topic name: use [a-zA-Z0-9._-], at most 249 characters`, {
      retriable: false,
    });
  }
}

/**
 * Stable across runs and processes, so one key always lands on one partition. Not Kafka's
 * murmur2: a log written here is never read by Kafka.
 */
function partitionOfKey(key: string, partitions: number): number {
  return crc32(key) % partitions;
}

/**
 * Records of one append, framed: `u32 body length, u32 crc32(body), body`; the body is
 * `u64 offset, i64 timestamp, i32 key length (-1: null), key, i32 value length, value,
 * u32 header count, (u32 length, name, u32 length, value)*`, big-endian, UTF-8. The offset
 * inside the checksummed body lets recovery tell a stale record from the one it expects.
 */
function encodeRecords(messages: OutgoingMessage[], firstOffset: number, timestamp: number): { data: Buffer; starts: number[] } {
  const parts = messages.map((m) => {
    const key = m.key == null ? null : Buffer.from(m.key, 'utf8');
    const value = typeof m.value === 'string' ? Buffer.from(m.value, 'utf8') : m.value;
    const headers = Object.entries(m.headers ?? {}).map(([k, v]) => [Buffer.from(k, 'utf8'), Buffer.from(String(v), 'utf8')] as const);
    let body = BODY_FIXED + (key?.length ?? 0) + value.length;
    for (const [k, v] of headers) body += 8 + k.length + v.length;
    return { key, value, headers, body };
  });
  const data = Buffer.allocUnsafe(parts.reduce((n, p) => n + FRAME_HEAD + p.body, 0));
  const starts: number[] = [];
  let at = 0;
  parts.forEach((p, i) => {
    starts.push(at);
    const bodyStart = at + FRAME_HEAD;
    let o = data.writeBigUInt64BE(BigInt(firstOffset + i), bodyStart);
    o = data.writeBigInt64BE(BigInt(timestamp), o);
    o = data.writeInt32BE(p.key ? p.key.length : -1, o);
    if (p.key) o += p.key.copy(data, o);
    o = data.writeInt32BE(p.value.length, o);
    o += p.value.copy(data, o);
    o = data.writeUInt32BE(p.headers.length, o);
    for (const [k, v] of p.headers) {
      o = data.writeUInt32BE(k.length, o);
      o += k.copy(data, o);
      o = data.writeUInt32BE(v.length, o);
      o += v.copy(data, o);
    }
    data.writeUInt32BE(p.body, at);
    data.writeUInt32BE(crc32(data.subarray(bodyStart, o)), at + 4);
    at = o;
  });
  return { data, starts };
}

/** The record framed at `at` in `buf`; throws when it is not whole or fails its checksum. */
function decodeRecord(buf: Buffer, at: number, topic: string, partition: number): { message: IncomingMessage; next: number } {
  const len = buf.readUInt32BE(at);
  const body = buf.subarray(at + FRAME_HEAD, at + FRAME_HEAD + len);
  if (len < BODY_FIXED || body.length !== len || crc32(body) !== buf.readUInt32BE(at + 4)) {
    throw new OrreryError('BUS_CORRUPT_RECORD', `a record of ${topic}/${partition} fails its checksum`, { retriable: false });
  }
  const offset = body.readBigUInt64BE(0).toString();
  const timestamp = Number(body.readBigInt64BE(8));
  let o = 16;
  const keyLen = body.readInt32BE(o);
  o += 4;
  const key = keyLen < 0 ? null : body.toString('utf8', o, o + keyLen);
  o += Math.max(0, keyLen);
  const valueLen = body.readInt32BE(o);
  o += 4;
  const value = valueLen < 0 ? null : body.subarray(o, o + valueLen);
  o += Math.max(0, valueLen);
  const count = body.readUInt32BE(o);
  o += 4;
  const headers: Array<[string, string]> = [];
  for (let i = 0; i < count; i++) {
    const kl = body.readUInt32BE(o);
    const k = body.toString('utf8', o + 4, o + 4 + kl);
    o += 4 + kl;
    const vl = body.readUInt32BE(o);
    headers.push([k, body.toString('utf8', o + 4, o + 4 + vl)]);
    o += 4 + vl;
  }
  return {
    message: { topic, partition, offset, key, value, headers: Object.fromEntries(headers), timestamp },
    next: at + FRAME_HEAD + len,
  };
}

async function readRange(fh: FileHandle, from: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, from + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

/**
 * The whole records at the start of a segment file: scanning stops at the first frame that
 * is cut short, fails its checksum, or carries another offset than the next one expected.
 * Whatever follows is a torn write that was never acknowledged.
 */
async function scanSegment(path: string, base: number): Promise<{ positions: number[]; size: number; fileSize: number }> {
  const fh = await open(path, 'r');
  try {
    const fileSize = (await fh.stat()).size;
    const positions: number[] = [];
    let pos = 0;
    let buf: Buffer = Buffer.alloc(0);
    let bufStart = 0;
    while (pos + FRAME_HEAD <= fileSize) {
      if (pos + FRAME_HEAD > bufStart + buf.length) {
        buf = await readRange(fh, pos, Math.min(SCAN_CHUNK_BYTES, fileSize - pos));
        bufStart = pos;
        if (buf.length < FRAME_HEAD) break;
      }
      const len = buf.readUInt32BE(pos - bufStart);
      const frameEnd = pos + FRAME_HEAD + len;
      if (len < BODY_FIXED || frameEnd > fileSize) break;
      if (frameEnd > bufStart + buf.length) {
        buf = await readRange(fh, pos, Math.min(Math.max(SCAN_CHUNK_BYTES, FRAME_HEAD + len), fileSize - pos));
        bufStart = pos;
        if (frameEnd > bufStart + buf.length) break;
      }
      const body = buf.subarray(pos - bufStart + FRAME_HEAD, frameEnd - bufStart);
      if (crc32(body) !== buf.readUInt32BE(pos - bufStart + 4)) break;
      if (body.readBigUInt64BE(0) !== BigInt(base + positions.length)) break;
      positions.push(pos);
      pos = frameEnd;
    }
    return { positions, size: pos, fileSize };
  } finally {
    await fh.close();
  }
}

/** Write to a temporary file, fsync, rename over, fsync the directory: all or nothing. */
async function writeFileDurably(dir: string, name: string, text: string): Promise<void> {
  const tmp = join(dir, `${name}.tmp`);
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, name));
  await fsyncDir(dir);
}

/**
 * A file name for any group id. The name inside the file is authoritative; a long id is
 * shortened with a checksum to stay under the file system's 255-byte limit.
 */
function groupFileName(group: string): string {
  const encoded = encodeURIComponent(group);
  return encoded.length <= 200 ? `${encoded}.json` : `${encoded.slice(0, 180)}~${crc32(group).toString(16)}.json`;
}

/**
 * The bus as a durable log on local disk, for single-process mode: no Kafka needed.
 *
 * Layout: `dir/<topic>/meta.json` (partition count), `dir/<topic>/<partition>/<base offset>.log`
 * (segments of checksummed records, rotating at `segmentBytes`), and
 * `dir/<topic>/groups/<group>.json` (committed offsets, replaced atomically).
 *
 * Producing: keyed messages go to `crc32(key) % partitions`, null keys round robin. A
 * produce resolves once its records are written and fsync'd; calls made while a flush is
 * running share the next one (one write and one fsync per partition file). Consumers see
 * only durable records.
 *
 * Consuming: one worker per assigned partition hands batches in offset order to the
 * handler and commits after it resolves; a throwing handler gets the same batch again after
 * a backoff. Subscriptions of one group in this process split the partitions (partition i
 * of a topic → the i-th member subscribed to it, mod their number, in join order); a
 * partition moves only after its old owner has finished and committed its in-flight batch.
 *
 * Retention: a segment other than the last is deleted once every group that has committed
 * on the topic, and every running consumer, is past it. A topic no group ever committed on
 * keeps everything.
 *
 * @example
 *   const bus = await createEmbeddedBus({ dir: '.orrery/bus', logger });
 *   await bus.ensureTopics([{ topic: Topics.raw, numPartitions: 4, replicationFactor: 1 }]);
 *   await bus.produce(Topics.raw, [{ key: 'src:u1', value: '{…}' }]);
 */
export function createEmbeddedBus(opts: EmbeddedBusOptions): ReturnType<typeof createLogBus> {
  return createLogBus(opts);
}

/**
 * The log bus above on either storage: segment files under `opts.dir`, or (with `openSqlite`)
 * one SQLite file at `opts.dir`, locked by `<file>.lock` beside it (./sqlite.ts).
 */
export async function createLogBus(opts: EmbeddedBusOptions, openSqlite?: () => SqliteLog): Promise<Bus & { copyTo(target: SqliteLog, marker: string): Promise<{ topics: number; records: number }> }> {
  const kind = openSqlite ? 'sqlite' : 'embedded';
  const root = openSqlite ? dirname(resolve(opts.dir)) : resolve(opts.dir);
  const log = opts.logger.child({ component: 'bus', adapter: kind });
  const pollIntervalMs = opts.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  const segmentBytes = Math.max(1, opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES);
  const maxBatchMessages = Math.max(1, opts.maxBatchMessages ?? DEFAULT_MAX_BATCH_MESSAGES);

  const topics = new Map<string, Topic>();
  const groups = new Map<string, Group>();
  const members = new Set<Member>();
  const appended = new EventEmitter();
  appended.setMaxListeners(0);
  let queue: PendingProduce[] = [];
  let flushing: Promise<void> | undefined;
  let closed = false;
  let closing: Promise<void> | undefined;

  // ensureTopics calls run one at a time, so two of them never create one topic twice.
  let topicLock: Promise<unknown> = Promise.resolve();
  function withTopicLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = topicLock.then(fn);
    topicLock = run.catch(() => {});
    return run;
  }

  const lockFile = openSqlite ? `${basename(opts.dir)}.lock` : LOCK_FILE;
  const releaseLock = await lockDir(root, { code: 'BUS_LOCKED', what: `an ${kind} bus`, logger: log, file: lockFile });
  let sql: SqliteLog | undefined;
  try {
    sql = openSqlite?.();
    await recover();
  } catch (err) {
    await closeHandles();
    await releaseLock();
    throw err;
  }

  function newPartition(topic: string, id: number, dir: string, end = 0, lowest?: number): Partition {
    return { topic, id, dir, segments: [], end, event: `${topic}\u0000${id}`, workers: new Set(), trimming: false, low: lowest };
  }

  function recoverSqlite(db: SqliteLog): void {
    for (const row of db.topics()) {
      const bounds = db.bounds(row.name);
      const groupOffsets = new Map<string, GroupOffsets>();
      for (const [group, committed] of db.groups(row.name)) groupOffsets.set(group, { group, dir: '', file: '', committed });
      const topic: Topic = { name: row.name, dir: '', partitions: [], groups: groupOffsets, roundRobin: 0 };
      for (let id = 0; id < row.partitions; id++) {
        const b = bounds.get(id);
        topic.partitions.push(newPartition(row.name, id, '', b?.end ?? 0, b?.low ?? 0));
      }
      topics.set(topic.name, topic);
    }
  }

  async function recover(): Promise<void> {
    let records = 0;
    if (sql) recoverSqlite(sql);
    else for (const entry of await readdir(root, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const dir = join(root, entry.name);
      let partitions: number;
      try {
        const meta = JSON.parse(await readFile(join(dir, META_FILE), 'utf8')) as { partitions?: unknown };
        if (!Number.isSafeInteger(meta.partitions) || (meta.partitions as number) < 1) throw new Error('bad partition count');
        partitions = meta.partitions as number;
      } catch (err) {
        // ensureTopics writes meta.json last: without it the topic was never created.
        log.warn({ err, topic: entry.name }, 'skipping a topic directory without a valid meta.json');
        continue;
      }
      const topic: Topic = { name: entry.name, dir, partitions: [], groups: await loadGroups(entry.name, dir), roundRobin: 0 };
      for (let id = 0; id < partitions; id++) {
        const p = await loadPartition(entry.name, id, join(dir, String(id)));
        records += p.end - low(p);
        topic.partitions.push(p);
      }
      topics.set(topic.name, topic);
    }
    for (const topic of topics.values()) for (const p of topic.partitions) await trim(topic, p);
    if (topics.size > 0) log.info({ topics: topics.size, records }, 'embedded bus recovered its log');
  }

  async function loadGroups(topic: string, topicDir: string): Promise<Map<string, GroupOffsets>> {
    const dir = join(topicDir, GROUPS_DIR);
    await mkdir(dir, { recursive: true });
    const found = new Map<string, GroupOffsets>();
    for (const name of await readdir(dir)) {
      if (!name.endsWith('.json')) continue;
      try {
        const saved = JSON.parse(await readFile(join(dir, name), 'utf8')) as { group?: unknown; offsets?: Record<string, unknown> };
        if (typeof saved.group !== 'string' || typeof saved.offsets !== 'object' || saved.offsets === null) throw new Error('not a group file');
        const committed = new Map<number, number>();
        for (const [p, o] of Object.entries(saved.offsets)) {
          if (Number.isSafeInteger(Number(p)) && Number.isSafeInteger(o)) committed.set(Number(p), o as number);
        }
        found.set(saved.group, { group: saved.group, dir, file: name, committed });
      } catch (err) {
        log.warn({ err, topic, file: name }, 'ignoring an unreadable group offsets file');
      }
    }
    return found;
  }

  async function loadPartition(topic: string, id: number, dir: string): Promise<Partition> {
    await mkdir(dir, { recursive: true });
    const bases = (await readdir(dir))
      .flatMap((name) => {
        const m = SEGMENT_FILE.exec(name);
        return m ? [Number(m[1])] : [];
      })
      .sort((a, b) => a - b);
    const segments: Segment[] = [];
    const torn = new Map<Segment, number>();
    for (const base of bases) {
      const path = join(dir, segmentName(base));
      const scan = await scanSegment(path, base);
      const seg: Segment = { base, path, positions: scan.positions, size: scan.size };
      if (scan.size < scan.fileSize) torn.set(seg, scan.fileSize - scan.size);
      segments.push(seg);
    }
    for (let i = 0; i + 1 < segments.length; i++) {
      const seg = segments[i]!;
      const keep = segments[i + 1]!.base - seg.base;
      if (seg.positions.length > keep) {
        // A failed append can leave records that look whole but were never acknowledged; the
        // next segment starts at the offset they would have had, and wins.
        seg.size = seg.positions[keep]!;
        seg.positions.length = keep;
      } else if (seg.positions.length < keep) {
        log.error({ topic, partition: id, from: seg.base + seg.positions.length, to: segments[i + 1]!.base }, 'offsets missing from the log: skipping them');
      }
    }
    const last = segments.at(-1);
    if (last) {
      // Appends continue in the last segment, so its torn tail is cut off before anything
      // is written after it.
      const handle = await open(last.path, 'r+');
      last.handle = handle;
      if (torn.has(last)) {
        await handle.truncate(last.size);
        await handle.sync();
      }
    }
    for (const [seg, bytes] of torn) log.warn({ topic, partition: id, segment: seg.base, bytes }, 'ignoring a torn or damaged record at the end of a segment');
    return { ...newPartition(topic, id, dir, last ? last.base + last.positions.length : 0), segments };
  }

  function low(p: Partition): number {
    return p.low ?? p.segments[0]?.base ?? p.end;
  }

  async function closeHandles(): Promise<void> {
    sql?.close();
    for (const topic of topics.values()) {
      for (const p of topic.partitions) {
        for (const seg of p.segments) {
          const handle = seg.handle;
          if (!handle) continue;
          delete seg.handle;
          await handle.close().catch(() => {});
        }
      }
    }
  }

  // ---- producing ----

  function partitionFor(topic: Topic, key: string | null): Partition {
    const n = topic.partitions.length;
    const id = key == null ? topic.roundRobin++ % n : partitionOfKey(key, n);
    return topic.partitions[id]!;
  }

  async function openSegment(p: Partition): Promise<Segment> {
    const base = p.end;
    // An empty last segment (new, or left by a failed append) has this very name: the
    // fresh file replaces it.
    if (p.segments.at(-1)?.base === base) p.segments.pop();
    const path = join(p.dir, segmentName(base));
    const seg: Segment = { base, path, positions: [], size: 0, handle: await open(path, 'w') };
    p.segments.push(seg);
    // The directory entry must be durable too, or a crash can lose the whole file.
    await fsyncDir(p.dir);
    return seg;
  }

  async function writableSegment(p: Partition, incoming: number): Promise<Segment> {
    const last = p.segments.at(-1);
    if (last?.handle) {
      if (last.size === 0 || last.size + incoming <= segmentBytes) return last;
      const handle = last.handle;
      delete last.handle;
      await handle.close();
    }
    return openSegment(p);
  }

  async function appendRecords(p: Partition, messages: OutgoingMessage[]): Promise<void> {
    const { data, starts } = encodeRecords(messages, p.end, Date.now());
    let seg: Segment | undefined;
    try {
      seg = await writableSegment(p, data.length);
      const handle = seg.handle!;
      for (let written = 0; written < data.length; ) {
        const { bytesWritten } = await handle.write(data, written, data.length - written, seg.size + written);
        written += bytesWritten;
      }
      await handle.sync();
    } catch (err) {
      // After a failed write or fsync the file's tail is unknown: stop appending to it. Its
      // durable part stays readable; the next append starts a new segment at the same offset.
      const last = p.segments.at(-1);
      if (last?.handle) {
        const handle = last.handle;
        delete last.handle;
        await handle.truncate(last.size).catch(() => {});
        await handle.close().catch(() => {});
      }
      throw err;
    }
    for (const start of starts) seg.positions.push(seg.size + start);
    seg.size += data.length;
    p.end += messages.length;
    appended.emit(p.event);
  }

  /** All calls in one SQLite transaction: one fsync, all or nothing. */
  function writeCallsSqlite(db: SqliteLog, calls: PendingProduce[]): boolean {
    const ends = new Map<Partition, number>();
    const rows: SqliteRow[] = [];
    const ts = Date.now();
    for (const call of calls) {
      for (const m of call.messages) {
        const p = partitionFor(call.topic, m.key);
        const offset = ends.get(p) ?? p.end;
        ends.set(p, offset + 1);
        const value = typeof m.value === 'string' ? Buffer.from(m.value, 'utf8') : m.value;
        const headers = Object.fromEntries(Object.entries(m.headers ?? {}).map(([k, v]) => [k, String(v)]));
        rows.push({ topic: p.topic, partition: p.id, offset, ts, key: m.key, value, headers });
      }
    }
    try {
      db.append(rows);
    } catch (err) {
      log.error({ err, messages: rows.length }, 'append failed');
      for (const call of calls) call.reject(writeFailed(call.topic.name, err));
      return false;
    }
    for (const [p, end] of ends) {
      p.end = end;
      appended.emit(p.event);
    }
    for (const call of calls) call.resolve();
    return true;
  }

  async function writeCalls(calls: PendingProduce[]): Promise<boolean> {
    if (sql) return writeCallsSqlite(sql, calls);
    // Queue order is kept within each partition, so a key's messages land in call order.
    const byPartition = new Map<Partition, { messages: OutgoingMessage[]; calls: Set<PendingProduce> }>();
    for (const call of calls) {
      for (const m of call.messages) {
        const p = partitionFor(call.topic, m.key);
        let entry = byPartition.get(p);
        if (!entry) byPartition.set(p, (entry = { messages: [], calls: new Set() }));
        entry.messages.push(m);
        entry.calls.add(call);
      }
    }
    const failed = new Map<PendingProduce, unknown>();
    await Promise.all(
      [...byPartition].map(async ([p, entry]) => {
        try {
          await appendRecords(p, entry.messages);
        } catch (err) {
          log.error({ err, topic: p.topic, partition: p.id, messages: entry.messages.length }, 'append failed');
          for (const call of entry.calls) if (!failed.has(call)) failed.set(call, err);
        }
      }),
    );
    for (const call of calls) {
      const err = failed.get(call);
      if (err === undefined) call.resolve();
      else call.reject(writeFailed(call.topic.name, err));
    }
    return failed.size === 0;
  }

  function writeFailed(topic: string, err: unknown): OrreryError {
    return new OrreryError('BUS_UNAVAILABLE', `could not append to ${topic}: ${(err as Error).message}`, {
      retriable: true,
      status: 503,
      cause: err,
    });
  }

  async function flushLoop(): Promise<void> {
    try {
      // Let the produce calls made in this turn join the first flush.
      await new Promise((r) => setImmediate(r));
      while (queue.length > 0) {
        const calls = queue;
        queue = [];
        let ok: boolean;
        try {
          ok = await writeCalls(calls);
        } catch (err) {
          // Only a bug gets here (writeCalls answers every call itself); never leave a caller hanging.
          log.error({ err }, 'flush failed');
          for (const call of calls) call.reject(err);
          ok = false;
        }
        if (!ok) {
          // Calls queued behind a failed write fail with it: written now, they would land
          // before the failed ones are retried and break per-key order (as on Kafka).
          const behind = queue;
          queue = [];
          for (const call of behind) call.reject(writeFailed(call.topic.name, new Error('an earlier append failed')));
        }
      }
    } finally {
      flushing = undefined;
    }
  }

  function produce(topicName: string, messages: OutgoingMessage[]): Promise<void> {
    if (closed) return Promise.reject(busClosed());
    const topic = topics.get(topicName);
    if (!topic) return Promise.reject(unknownTopic(topicName));
    if (messages.length === 0) return Promise.resolve();
    return new Promise<void>((resolveCall, rejectCall) => {
      queue.push({ topic, messages, resolve: resolveCall, reject: rejectCall });
      flushing ??= flushLoop();
    });
  }

  // ---- reading ----

  /**
   * Up to `max` messages from `from` on, from one segment, or undefined when there is
   * nothing yet. Offsets below the oldest segment (deleted by retention) are skipped.
   */
  async function readBatch(p: Partition, from: number, max: number): Promise<IncomingBatch | undefined> {
    if (sql) {
      const start = Math.max(from, low(p));
      if (start >= p.end) return undefined;
      return { topic: p.topic, partition: p.id, messages: sql.read(p.topic, p.id, start, max, MAX_BATCH_BYTES) };
    }
    for (let attempt = 1; ; attempt++) {
      if (from >= p.end) return undefined;
      const seg = p.segments.find((s) => s.base + s.positions.length > from);
      if (!seg) return undefined;
      const first = Math.max(from, seg.base) - seg.base;
      const count = seg.positions.length;
      const endOf = (i: number): number => (i + 1 < count ? seg.positions[i + 1]! : seg.size);
      const startPos = seg.positions[first]!;
      const limit = Math.min(count, first + max);
      let stop = first + 1;
      while (stop < limit && endOf(stop) - startPos <= MAX_BATCH_BYTES) stop++;
      const endPos = endOf(stop - 1);
      let buf: Buffer;
      try {
        const fh = await open(seg.path, 'r');
        try {
          buf = await readRange(fh, startPos, endPos - startPos);
        } finally {
          await fh.close();
        }
      } catch (err) {
        // Retention may have deleted the segment between the lookup and the open.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && attempt < 3 && !p.segments.includes(seg)) continue;
        throw err;
      }
      if (buf.length < endPos - startPos) throw new OrreryError('BUS_CORRUPT_RECORD', `${seg.path} is shorter than its index`, { retriable: false });
      const messages: IncomingMessage[] = [];
      for (let at = 0; at < buf.length; ) {
        const { message, next } = decodeRecord(buf, at, p.topic, p.id);
        messages.push(message);
        at = next;
      }
      return { topic: p.topic, partition: p.id, messages };
    }
  }

  /** Resolves when `p` grows past `position`, the poll interval passes, or the worker is revoked. */
  function waitForData(p: Partition, position: number, signal: AbortSignal): Promise<void> {
    if (p.end > position || signal.aborted) return Promise.resolve();
    return new Promise<void>((wake) => {
      const done = (): void => {
        clearTimeout(timer);
        appended.off(p.event, done);
        signal.removeEventListener('abort', done);
        wake();
      };
      const timer = setTimeout(done, pollIntervalMs);
      appended.on(p.event, done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  // ---- committed offsets ----

  function groupOffsets(topic: Topic, group: string): GroupOffsets {
    let g = topic.groups.get(group);
    if (!g) {
      g = { group, dir: join(topic.dir, GROUPS_DIR), file: groupFileName(group), committed: new Map() };
      topic.groups.set(group, g);
    }
    return g;
  }

  /**
   * Persists the group's offsets. Commits of several partitions that arrive while a write
   * is running share the next write; one file is never written by two writes at once.
   */
  function persistOffsets(g: GroupOffsets): Promise<void> {
    g.waiting ??= deferred();
    const mine = g.waiting;
    g.writing ??= (async () => {
      try {
        while (g.waiting) {
          const batch = g.waiting;
          g.waiting = undefined;
          const text = JSON.stringify({ group: g.group, offsets: Object.fromEntries(g.committed) });
          try {
            await writeFileDurably(g.dir, g.file, text);
            batch.resolve();
          } catch (err) {
            batch.reject(err);
          }
        }
      } finally {
        g.writing = undefined;
      }
    })();
    return mine.promise;
  }

  async function commit(topic: Topic, p: Partition, group: string, next: number): Promise<void> {
    const g = groupOffsets(topic, group);
    if (next > (g.committed.get(p.id) ?? -1)) g.committed.set(p.id, next);
    if (sql) sql.commit(group, topic.name, new Map([[p.id, g.committed.get(p.id)!]]));
    else await persistOffsets(g);
  }

  /** Deletes the partition's oldest segments that everyone is past. Never the last one. */
  async function trim(topic: Topic, p: Partition): Promise<void> {
    if (p.trimming || topic.groups.size === 0) return;
    p.trimming = true;
    try {
      let floor = Infinity;
      for (const g of topic.groups.values()) floor = Math.min(floor, g.committed.get(p.id) ?? low(p));
      for (const w of p.workers) floor = Math.min(floor, w.position);
      if (sql) {
        // The last record stays, so a reopened log knows where its offsets end.
        const to = Math.min(floor, p.end - 1);
        if (to > low(p)) {
          sql.trim(p.topic, p.id, to);
          p.low = to;
        }
        return;
      }
      while (p.segments.length > 1) {
        const seg = p.segments[0]!;
        if (seg.base + seg.positions.length > floor) break;
        // Out of the index first, so no new read picks it.
        p.segments.shift();
        await unlink(seg.path).catch((err: unknown) => {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        });
        log.debug({ topic: topic.name, partition: p.id, segment: seg.base }, 'deleted a consumed segment');
      }
    } finally {
      p.trimming = false;
    }
  }

  // ---- consumer groups ----

  function getGroup(name: string): Group {
    let g = groups.get(name);
    if (!g) groups.set(name, (g = { name, members: [], desired: new Map(), owners: new Map(), resetAt: new Map() }));
    return g;
  }

  function rebalance(group: Group): void {
    const desired = new Map<Partition, Member>();
    for (const name of new Set(group.members.flatMap((m) => m.topics))) {
      const topic = topics.get(name)!;
      const subscribed = group.members.filter((m) => m.topics.includes(name));
      topic.partitions.forEach((p, i) => desired.set(p, subscribed[i % subscribed.length]!));
    }
    group.desired = desired;
    reconcile(group);
  }

  /**
   * Moves the group towards its desired assignment: a worker on a partition that belongs
   * to someone else now is revoked, and a partition gets its new worker only once the old
   * one has ended, so two members never hold one partition and nothing is handled twice.
   */
  function reconcile(group: Group): void {
    for (const [p, w] of group.owners) if (group.desired.get(p) !== w.member) w.revoke.abort();
    if (closed) return;
    for (const [p, m] of group.desired) if (!group.owners.has(p)) startWorker(group, m, p);
  }

  function startPosition(group: Group, member: Member, p: Partition): number {
    const topic = topics.get(p.topic)!;
    const committed = topic.groups.get(group.name)?.committed.get(p.id);
    const wanted = committed ?? group.resetAt.get(p) ?? (member.opts.fromBeginning ? low(p) : p.end);
    if (wanted < low(p)) {
      log.warn({ group: group.name, topic: p.topic, partition: p.id, from: wanted, to: low(p) }, 'committed offset was deleted by retention: skipping ahead');
      return low(p);
    }
    if (wanted > p.end) {
      log.warn({ group: group.name, topic: p.topic, partition: p.id, committed: wanted, end: p.end }, 'committed offset is past the end of the log');
      return p.end;
    }
    return wanted;
  }

  function startWorker(group: Group, member: Member, p: Partition): void {
    const w: Worker = { member, partition: p, revoke: new AbortController(), position: startPosition(group, member, p), done: Promise.resolve() };
    group.owners.set(p, w);
    member.workers.add(w);
    p.workers.add(w);
    w.done = runWorker(group, w)
      .catch((err: unknown) => log.error({ err, group: group.name, topic: p.topic, partition: p.id }, 'consumer worker failed'))
      .finally(() => {
        group.owners.delete(p);
        member.workers.delete(w);
        p.workers.delete(w);
        // The partition has left this member: its failures are no longer this member's.
        member.tracker.clear(p.topic, p.id);
        reconcile(group);
      });
  }

  function reportError(member: Member, err: unknown): void {
    try {
      member.opts.onError?.(err);
    } catch (hookErr) {
      log.warn({ err: hookErr }, 'onError threw');
    }
  }

  async function runWorker(group: Group, w: Worker): Promise<void> {
    const { member, partition: p } = w;
    const topic = topics.get(p.topic)!;
    const signal = w.revoke.signal;
    let batch: IncomingBatch | undefined;
    let failures = 0;
    while (!signal.aborted) {
      if (!batch) {
        try {
          batch = await readBatch(p, w.position, maxBatchMessages);
        } catch (err) {
          log.error({ err, group: group.name, topic: p.topic, partition: p.id, offset: w.position }, 'read failed');
          reportError(member, err);
          await abortableSleep(backoffDelay(++failures, REDELIVERY_BACKOFF), signal);
          continue;
        }
        if (!batch) {
          await waitForData(p, w.position, signal);
          continue;
        }
      }
      try {
        await member.opts.handle(batch);
      } catch (err) {
        log.warn({ err, group: group.name, topic: p.topic, partition: p.id, offset: batch.messages[0]?.offset }, 'handler failed: redelivering');
        member.tracker.failed(p.topic, p.id, batch.messages[0]!.offset, err);
        reportError(member, err);
        // The same batch comes again after the wait, unless the partition is revoked first:
        // then the next owner starts from the same committed offset.
        await abortableSleep(backoffDelay(++failures, REDELIVERY_BACKOFF), signal);
        continue;
      }
      failures = 0;
      const next = Number(batch.messages.at(-1)!.offset) + 1;
      // The handler succeeded: commit even when revoked meanwhile (stop() waits for this).
      for (let attempt = 1; ; attempt++) {
        try {
          await commit(topic, p, group.name, next);
          break;
        } catch (err) {
          log.error({ err, group: group.name, topic: p.topic, partition: p.id, offset: next }, 'commit failed');
          reportError(member, err);
          // Giving up leaves the batch to be delivered again: at least once.
          if (signal.aborted) return;
          await abortableSleep(backoffDelay(attempt, REDELIVERY_BACKOFF), signal);
        }
      }
      member.tracker.clear(p.topic, p.id);
      w.position = next;
      batch = undefined;
      void trim(topic, p).catch((err: unknown) => log.warn({ err, topic: p.topic, partition: p.id }, 'retention failed'));
    }
  }

  async function consume(c: ConsumeOptions): Promise<Subscription> {
    if (closed) throw busClosed();
    const names = [...new Set(c.topics)];
    for (const name of names) if (!topics.has(name)) throw unknownTopic(name);
    const group = getGroup(c.group);
    const member: Member = { group, topics: names, opts: c, workers: new Set(), tracker: createProgressTracker(), stop };
    for (const name of names) {
      const topic = topics.get(name)!;
      const committed = topic.groups.get(c.group)?.committed;
      for (const p of topic.partitions) {
        if (committed?.has(p.id) || group.resetAt.has(p)) continue;
        group.resetAt.set(p, c.fromBeginning ? low(p) : p.end);
      }
    }
    group.members.push(member);
    members.add(member);
    rebalance(group);

    let stopped: Promise<void> | undefined;
    function stop(): Promise<void> {
      stopped ??= (async () => {
        group.members = group.members.filter((m) => m !== member);
        members.delete(member);
        if (group.members.length === 0) group.resetAt.clear();
        // Revokes this member's workers; each finishes and commits its in-flight batch, and
        // the remaining members take the partitions over as they are released.
        rebalance(group);
        await Promise.all([...member.workers].map((w) => w.done));
      })();
      return stopped;
    }
    // The assignment is computed synchronously above: the member holds its partitions now.
    return { ready: Promise.resolve(), progress: member.tracker.progress, stop };
  }

  // ---- topics ----

  function ensureTopics(specs: TopicSpec[]): Promise<void> {
    if (closed) return Promise.reject(busClosed());
    return withTopicLock(async () => {
      const created: string[] = [];
      for (const spec of specs) {
        if (topics.has(spec.topic)) continue;
        assertTopicName(spec.topic);
        if (!Number.isSafeInteger(spec.numPartitions) || spec.numPartitions < 1) {
          throw new OrreryError('BUS_INVALID_TOPIC', `topic ${spec.topic}: numPartitions must be a positive integer`, { retriable: false });
        }
        const dir = join(root, spec.topic);
        if (sql) {
          sql.createTopic(spec.topic, spec.numPartitions);
          const topic: Topic = { name: spec.topic, dir: '', partitions: [], groups: new Map(), roundRobin: 0 };
          for (let id = 0; id < spec.numPartitions; id++) topic.partitions.push(newPartition(spec.topic, id, '', 0, 0));
          topics.set(topic.name, topic);
          created.push(topic.name);
          continue;
        }
        for (let id = 0; id < spec.numPartitions; id++) await mkdir(join(dir, String(id)), { recursive: true });
        await mkdir(join(dir, GROUPS_DIR), { recursive: true });
        // meta.json last: recovery takes a directory for a topic only once it is there.
        await writeFileDurably(dir, META_FILE, JSON.stringify({ version: 1, partitions: spec.numPartitions }));
        await fsyncDir(root);
        const topic: Topic = { name: spec.topic, dir, partitions: [], groups: new Map(), roundRobin: 0 };
        for (let id = 0; id < spec.numPartitions; id++) topic.partitions.push(newPartition(spec.topic, id, join(dir, String(id))));
        topics.set(topic.name, topic);
        created.push(topic.name);
      }
      if (created.length > 0) log.info({ topics: created }, 'created topics');
    });
  }

  async function lag(group: string, topicName: string): Promise<number> {
    const topic = topics.get(topicName);
    if (!topic) throw unknownTopic(topicName);
    const committed = topic.groups.get(group)?.committed;
    let total = 0;
    for (const p of topic.partitions) total += Math.max(0, p.end - Math.max(low(p), committed?.get(p.id) ?? 0));
    return total;
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      closed = true;
      // Produce calls accepted before close still get written and answered.
      while (flushing) await flushing;
      await Promise.all([...members].map((m) => m.stop()));
      // Subscriptions stopped just before close may still be committing their last batch.
      await Promise.all([...groups.values()].flatMap((g) => [...g.owners.values()].map((w) => w.done)));
      await closeHandles();
      await releaseLock();
    })();
    return closing;
  }

  /**
   * Every retained record (offsets kept) and every committed offset, into `target` in one
   * transaction: the migration of a segment-file log to SQLite (./sqlite.ts).
   */
  async function copyTo(target: SqliteLog, marker: string): Promise<{ topics: number; records: number }> {
    let records = 0;
    await target.load(marker, async (into) => {
      for (const topic of topics.values()) {
        into.topic(topic.name, topic.partitions.length);
        for (const p of topic.partitions) {
          let copied = 0;
          for (let from = low(p); from < p.end; ) {
            const batch = await readBatch(p, from, maxBatchMessages);
            if (!batch || batch.messages.length === 0) break;
            into.rows(
              batch.messages.map((m) => ({ topic: topic.name, partition: p.id, offset: Number(m.offset), ts: m.timestamp, key: m.key, value: m.value ?? Buffer.alloc(0), headers: m.headers })),
            );
            copied += batch.messages.length;
            from = Number(batch.messages.at(-1)!.offset) + 1;
          }
          // SQLite knows a partition's end from its last record; with none, offsets restart at 0.
          if (copied === 0 && p.end > 0) log.warn({ topic: topic.name, partition: p.id, end: p.end }, 'migration: a partition with no retained record; its offsets restart at 0');
          records += copied;
        }
        for (const g of topic.groups.values()) into.offsets(g.group, topic.name, g.committed);
      }
    });
    return { topics: topics.size, records };
  }

  return {
    kind,
    produce,
    consume,
    ensureTopics,
    lag,
    async ping() {
      return !closed;
    },
    close,
    copyTo,
  };
}
