import type { Bus } from '../core/bus/types.ts';
import { OrreryError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { abortableSleep, backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from '../core/retry.ts';
import type { Spool, SpoolRecord } from './spool.ts';

export interface Handoff {
  /**
   * Resolves once the records are durable: acknowledged by the bus within timeoutMs, or
   * else fsync'd to the spool. Rejects (SPOOL_FULL 503) only when neither is possible.
   */
  send(records: SpoolRecord[]): Promise<'bus' | 'spool'>;
  /** 'ok' | 'degraded' (spool in use) */
  state(): 'ok' | 'degraded';
  spoolDepth(): number;
  /**
   * Stops taking new sends (rejects them with a retriable 503 OrreryError 'SHUTTING_DOWN'),
   * waits for in-flight sends to settle, tries a last replay for up to `drainMs`, stops the
   * replay loop. Whatever stays in the spool is replayed on next start.
   */
  close(drainMs?: number): Promise<void>;
}

export type HandoffEvent =
  | { type: 'produced' | 'spooled' | 'replayed'; records: number; ms: number }
  | { type: 'replay_failed'; error: unknown }
  | { type: 'spool_full' };

export interface HandoffOptions {
  bus: Bus;
  spool: Spool;
  topic: string;
  /** How long a direct produce may take before the records go to the spool instead. */
  timeoutMs: number;
  logger: Logger;
  onEvent?: (e: HandoffEvent) => void;
  replay?: {
    /** Records per peek of the spool. Default 500. */
    batchSize?: number;
    /**
     * Value bytes per produce call while replaying; a peeked batch is sent as several calls,
     * one after the other, so it never outgrows the broker's message.max.bytes. Default 512 KiB.
     */
    maxBatchBytes?: number;
    backoff?: Partial<BackoffPolicy>;
  };
}

/** A direct send waiting for the bus; `divert` moves it to the spool instead. */
interface DirectSend {
  divert(): void;
}

const DEFAULT_DRAIN_MS = 5_000;

function since(started: number): number {
  return Math.round((performance.now() - started) * 1000) / 1000;
}

/** Splits records into runs of at most `maxBytes` (a bigger record goes alone), in order. */
function byBytes(records: SpoolRecord[], maxBytes: number): SpoolRecord[][] {
  const out: SpoolRecord[][] = [];
  let run: SpoolRecord[] = [];
  let bytes = 0;
  for (const r of records) {
    const size = Buffer.byteLength(r.value) + (r.key === null ? 0 : Buffer.byteLength(r.key));
    if (run.length > 0 && bytes + size > maxBytes) {
      out.push(run);
      run = [];
      bytes = 0;
    }
    run.push(r);
    bytes += size;
  }
  if (run.length > 0) out.push(run);
  return out;
}

/**
 * The durable hand-off from ingest to Kafka. A send goes straight to the bus and resolves
 * 'bus' once acknowledged; when the bus fails or takes longer than `timeoutMs`, the records
 * are fsync'd to the local spool instead and the send resolves 'spool'. While the spool holds
 * anything, every send goes to the spool, behind what is already there, and a replay loop
 * moves the spool into the bus, oldest first, with backoff between failed tries. Once the
 * spool is empty, sends go direct again. Order per key holds across both switches.
 *
 * Delivery is at least once: a produce that timed out may still land, and is then sent
 * again by the replay. Downstream stages drop the duplicate by messageId.
 *
 * @example
 *   const handoff = createHandoff({ bus, spool, topic: Topics.raw, timeoutMs: 2_000, logger });
 *   const via = await handoff.send([{ key: 'src:u1', value: encodeEnvelope(envelope) }]); // 'bus' | 'spool'
 *   // on shutdown
 *   await handoff.close();
 *   await spool.close();
 */
export function createHandoff(opts: HandoffOptions): Handoff {
  const { bus, spool, topic, timeoutMs } = opts;
  const log = opts.logger.child({ handoff: topic });
  const batchSize = Math.max(1, opts.replay?.batchSize ?? 500);
  const maxBatchBytes = opts.replay?.maxBatchBytes ?? 512 * 1024;
  const backoff = opts.replay?.backoff ?? {};
  const policy: BackoffPolicy = {
    initialMs: backoff.initialMs ?? DEFAULT_BACKOFF.initialMs,
    factor: backoff.factor ?? DEFAULT_BACKOFF.factor,
    maxMs: backoff.maxMs ?? DEFAULT_BACKOFF.maxMs,
    jitter: backoff.jitter ?? DEFAULT_BACKOFF.jitter,
  };

  /** Direct sends waiting for the bus, in the order they started (Set keeps insertion order). */
  const inflight = new Set<DirectSend>();
  /** Every send not yet settled, so close() can wait for them. */
  const unsettled = new Set<Promise<unknown>>();
  /** Spool appends started and not yet settled: their records are not in depth() yet. */
  let appending = 0;
  let replaying: Promise<void> | undefined;
  let sleeper: AbortController | undefined;
  let accepting = true;
  let stopped = false;
  let closing: Promise<void> | undefined;
  let degradedLogged = spool.depth().records > 0;

  function emit(e: HandoffEvent): void {
    try {
      opts.onEvent?.(e);
    } catch (err) {
      log.warn({ err }, 'handoff onEvent listener threw');
    }
  }

  function spoolInUse(): boolean {
    return appending > 0 || replaying !== undefined || spool.depth().records > 0;
  }

  function send(records: SpoolRecord[]): Promise<'bus' | 'spool'> {
    if (!accepting) {
      return Promise.reject(new OrreryError('SHUTTING_DOWN', 'ingest is shutting down: retry shortly', { retriable: true, status: 503 }));
    }
    if (records.length === 0) return Promise.resolve('bus');
    // Order per key: while anything waits in the spool (or is on its way in or out), a
    // direct send could overtake it, so new records queue behind it in the spool.
    const started = performance.now();
    const p = spoolInUse() ? viaSpool(records, started) : direct(records, started);
    unsettled.add(p);
    const forget = () => void unsettled.delete(p);
    p.then(forget, forget);
    return p;
  }

  function direct(records: SpoolRecord[], started: number): Promise<'bus' | 'spool'> {
    return new Promise((resolve, reject) => {
      const d: DirectSend = { divert };
      inflight.add(d);
      const timer = setTimeout(
        () => cutOver(new OrreryError('BUS_TIMEOUT', `the bus did not acknowledge within ${timeoutMs} ms`, { retriable: true, status: 503 })),
        timeoutMs,
      );
      /** True for whichever of ack and divert comes first; the other then does nothing. */
      function claim(): boolean {
        if (!inflight.delete(d)) return false;
        clearTimeout(timer);
        return true;
      }
      function divert(): void {
        if (claim()) viaSpool(records, started).then(resolve, reject);
      }
      bus.produce(topic, records).then(
        () => {
          // An ack after the send was diverted is a duplicate of what the spool replays
          // (dropped downstream by messageId); the send already resolved 'spool'.
          if (!claim()) return;
          emit({ type: 'produced', records: records.length, ms: since(started) });
          resolve('bus');
        },
        (err: unknown) => {
          if (inflight.has(d)) cutOver(err);
        },
      );
    });
  }

  /**
   * The bus failed or is slow: every direct send still waiting goes to the spool now, oldest
   * first, before any later send can be appended. Waiting for each one's own timeout instead
   * would let sends made after the switch (already spooled) get ahead of older ones.
   */
  function cutOver(reason: unknown): void {
    if (inflight.size === 0) return;
    log.warn({ err: reason, sends: inflight.size }, 'the bus did not take the events: spooling them to disk');
    for (const d of [...inflight]) d.divert();
  }

  async function viaSpool(records: SpoolRecord[], started: number): Promise<'spool'> {
    // Counted synchronously, before the append is queued, so that sends from here on see
    // the spool in use and queue behind these records.
    appending++;
    if (!degradedLogged) {
      degradedLogged = true;
      log.warn('hand-off degraded: events go to the local spool until the bus takes them');
    }
    try {
      await spool.append(records);
    } catch (err) {
      if (err instanceof OrreryError && err.code === 'SPOOL_FULL') {
        emit({ type: 'spool_full' });
        log.error({ depth: spool.depth() }, 'the spool is full: refusing events');
      }
      throw err;
    } finally {
      appending--;
      kick();
    }
    emit({ type: 'spooled', records: records.length, ms: since(started) });
    return 'spool';
  }

  /** Starts the replay loop unless it runs already, is stopped, or has nothing to do. */
  function kick(): void {
    if (replaying || stopped) return;
    if (spool.depth().records === 0) {
      if (degradedLogged && appending === 0) {
        degradedLogged = false;
        log.info('spool drained: producing to the bus directly again');
      }
      return;
    }
    replaying = replayLoop()
      .catch((err: unknown) => log.error({ err }, 'spool replay loop failed'))
      .finally(() => {
        replaying = undefined;
        // An append may have finished while the loop was on its way out; its kick() saw
        // the loop still running, so look again.
        kick();
      });
  }

  async function replayLoop(): Promise<void> {
    let attempt = 0;
    while (!stopped && spool.depth().records > 0) {
      const started = performance.now();
      try {
        const { records, cursor } = await spool.peek(batchSize);
        // One run at a time: a later run must not land while an earlier one may still fail.
        for (const run of byBytes(records, maxBatchBytes)) await bus.produce(topic, run);
        await spool.commit(cursor);
        attempt = 0;
        if (records.length > 0) emit({ type: 'replayed', records: records.length, ms: since(started) });
      } catch (err) {
        if (stopped) break;
        // Never drop: the batch stays in the spool and is tried again, whole (the runs that
        // did land become duplicates, dropped downstream).
        attempt++;
        emit({ type: 'replay_failed', error: err });
        const delayMs = backoffDelay(attempt, policy);
        log.warn({ err, attempt, delayMs, depth: spool.depth().records }, 'spool replay failed: retrying');
        sleeper = new AbortController();
        await abortableSleep(delayMs, sleeper.signal);
        sleeper = undefined;
      }
    }
  }

  function close(drainMs = DEFAULT_DRAIN_MS): Promise<void> {
    closing ??= (async () => {
      accepting = false;
      // Direct sends settle within timeoutMs (acked, or in the spool); spool appends after one fsync.
      await Promise.allSettled([...unsettled]);
      const timer = new AbortController();
      const timeUp = abortableSleep(drainMs, timer.signal).then(() => true);
      kick();
      // A last try right away rather than after the current backoff.
      sleeper?.abort();
      while (replaying) {
        if (await Promise.race([replaying.then(() => false), timeUp])) break;
      }
      timer.abort();
      stopped = true;
      sleeper?.abort();
      const left = spool.depth().records;
      if (left > 0) log.warn({ records: left }, 'hand-off closed with events in the spool: they are replayed on next start');
    })();
    return closing;
  }

  kick();

  return {
    send,
    state: () => (spoolInUse() ? 'degraded' : 'ok'),
    spoolDepth: () => spool.depth().records,
    close,
  };
}
