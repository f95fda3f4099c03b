import type { Bus, IncomingBatch, Subscription } from '../core/bus/types.ts';
import type { Cache } from '../core/cache/types.ts';
import type { DestinationConfig } from '../core/control-plane.ts';
import { decodeEnvelope, eventKey, type Envelope } from '../core/envelope.ts';
import { isRetriable } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { abortableSleep, backoffDelay, type BackoffPolicy } from '../core/retry.ts';
import { createBreaker, type Breaker } from './breaker.ts';
import type { NewDeadLetter } from './dead-letters.ts';
import { DeliveryError, destinationSettings, type DestinationModule } from './destinations/types.ts';
import type { Park } from './park.ts';

export interface RetryPolicy {
  /**
   * Give up on an event this long after its first attempt (RudderStack: 180 min, Segment:
   * 4 h): until then a retriable failure is retried, however many attempts it took.
   */
  maxAgeMs: number;
  /** Opt-in: also give up after this many attempts, the first included. Unset: no limit. */
  maxAttempts?: number | undefined;
  /** Between the attempts of one event while the breaker is closed. */
  backoff: BackoffPolicy;
  /**
   * With a park: an event still failing this long after its first attempt moves to the
   * park, with its user's later events, so the rest of its partition flows on. Default 30 s.
   */
  parkAfterMs?: number | undefined;
  /** With a park: past this many parked events, a failing user waits in place instead. Default 10,000. */
  parkMaxEvents?: number | undefined;
}

export interface SinkMetrics {
  delivered(destinationId: string, events: Envelope[]): void;
  failed(destinationId: string, retriable: boolean): void;
  retried(destinationId: string): void;
  deadLettered(destinationId: string, n: number): void;
  parked?(destinationId: string, n: number): void;
}

export interface SinkWorkerOptions {
  bus: Bus;
  topic: string;
  group: string;
  destination: DestinationConfig;
  module: DestinationModule<unknown>;
  /** Remembers delivered messageIds, so a duplicate from upstream is delivered once. */
  cache: Cache;
  dedupTtlMs: number;
  deadLetter: (letters: NewDeadLetter[]) => Promise<void>;
  /**
   * Where a user whose event keeps failing waits while the others flow (sinks/park.ts);
   * none (tests of the worker alone): that user's partition waits with it, up to `maxAgeMs`.
   */
  park?: Park | undefined;
  policy: RetryPolicy;
  /** Users delivered at once, across every partition batch in hand. */
  concurrency: number;
  /** Partition batches handled at once (each partition in order). Default 1. */
  partitionConcurrency?: number;
  fetch: typeof fetch;
  logger: Logger;
  metrics?: SinkMetrics;
  /** Defaults: 5 failures in a row; open for 100 ms, doubling per failed trial up to 1 s. */
  breaker?: { threshold: number; cooldownMs: number; maxCooldownMs: number };
  now?: () => number;
}

export interface SinkWorker {
  start(): Promise<void>;
  breaker(): Breaker;
  /** Parked users and events (0 and 0 without a park). */
  parked(): Promise<{ users: number; events: number }>;
  stop(): Promise<void>;
}

interface Pending {
  event: Envelope;
  attempts: number;
  firstAttemptAt: number | undefined;
  lastError?: DeliveryError | Error;
}

/**
 * One destination's worker: a consumer group on its topic, delivering each partition
 * batch through the destination module.
 *
 * The fast path sends the batch in chunks of the module's batch size, in offset order,
 * across users. When a chunk fails, its events move to per-user lanes, and so does every
 * later event of those users in the batch: a user whose event is retrying holds back only
 * that user's later events. Lanes run concurrently and retry one event at a time until it
 * is delivered, refused for good (4xx), or older than the policy's `maxAgeMs` (or past its
 * opt-in `maxAttempts`), when it becomes a dead letter and the lane moves on.
 *
 * Between attempts an event waits its own backoff (honouring Retry-After) while the
 * destination's breaker is closed: its failure was its own. When the breaker is open the
 * destination is down for everyone, and the event waits on the breaker instead, which
 * lets one trial through at a time on a schedule capped at about a second; the trial that
 * succeeds closes the breaker and wakes every waiting lane, also those in a backoff. So
 * recovery is noticed within the breaker's cap however long the outage, and waiting on
 * the breaker is never an attempt.
 * The batch's offsets are committed when every event is delivered, dead-lettered or
 * parked, so a crash re-reads the batch: delivered messageIds are remembered, and are not
 * sent again.
 *
 * With a park (sinks/park.ts), an event still failing `parkAfterMs` after its first try
 * moves there with the rest of its lane, so one user the destination keeps refusing does
 * not hold back its partition; later events of a parked user join it there, and a drainer
 * retries the park in order and unparks the user when it is empty.
 *
 * @example const worker = createSinkWorker({ bus, topic, group, destination, module, cache, deadLetter, policy, … });
 */
export function createSinkWorker(opts: SinkWorkerOptions): SinkWorker {
  const now = opts.now ?? Date.now;
  const log = opts.logger.child({ destination: opts.destination.id, type: opts.module.type });
  const config = opts.module.configSchema.parse(destinationSettings(opts.destination));
  const breaker = createBreaker({
    threshold: opts.breaker?.threshold ?? 5,
    cooldownMs: opts.breaker?.cooldownMs ?? 100,
    maxCooldownMs: opts.breaker?.maxCooldownMs ?? 1_000,
    now,
  });
  // Stopping ends the waits between retries at once; deliveries already on the wire get a
  // grace period to finish before they are aborted too.
  const stopping = new AbortController();
  const hardStop = new AbortController();
  let subscription: Subscription | undefined;
  const destId = opts.destination.id;
  const dedupKey = (e: Envelope) => `sink:${destId}:${e.sourceId}:${e.messageId}`;

  /** When the destination last took a call: a failing event is parked only if it took others since. */
  let lastSuccessAt = -Infinity;
  /** The half-open trial in flight, if any: while it runs, the others wait for its outcome. */
  let trial: Promise<void> | undefined;
  /** Aborted (and replaced) when the breaker closes after being open: ends the lanes' backoffs. */
  let recovery = new AbortController();
  breaker.onRecover(() => {
    const recovered = recovery;
    recovery = new AbortController();
    recovered.abort();
    log.info('circuit closed: the destination answered');
  });
  /** The group heartbeat of the batch in hand (any batch's keeps this member alive). */
  let heartbeat: () => Promise<void> = async () => {};

  /**
   * Waits `ms`, telling the group we are alive every few seconds: a wait on the breaker or
   * a backoff can outlast the session timeout, and a member that goes quiet loses its
   * partitions, so its batch would be read (and delivered) again elsewhere. Stopping ends
   * it, and so does `cut` (which stopping aborts too).
   */
  async function wait(ms: number, cut: AbortSignal = stopping.signal): Promise<void> {
    const until = now() + ms;
    for (let left = ms; left > 0 && !cut.aborted && !stopping.signal.aborted; left = until - now()) {
      await abortableSleep(Math.min(left, 3_000), cut);
      await heartbeat().catch(() => {});
    }
  }

  async function attempt(events: Envelope[]): Promise<void> {
    for (;;) {
      const cooldown = breaker.waitMs();
      if (cooldown > 0) await wait(cooldown);
      if (stopping.signal.aborted) throw new Error('worker stopping: the batch will be read again');
      if (breaker.state() !== 'half-open') return send(events);
      // Half-open: one call tests the destination; the rest wait for its outcome instead
      // of all trying (and all failing, each spending an attempt) at once.
      if (trial) {
        await trial.catch(() => {});
        continue;
      }
      trial = send(events);
      try {
        return await trial;
      } finally {
        trial = undefined;
      }
    }
  }

  async function send(events: Envelope[]): Promise<void> {
    try {
      await opts.module.deliver(events, config, { fetch: opts.fetch, now, signal: hardStop.signal });
    } catch (err) {
      // A refusal (4xx) means the destination is up: only retriable failures count.
      if (isRetriable(err)) {
        const before = breaker.state();
        breaker.failure((err as DeliveryError).retryAfterMs);
        if (before !== 'open' && breaker.state() === 'open') {
          log.warn({ err, cooldownMs: breaker.cooldownMs() }, before === 'half-open' ? 'circuit re-opened: the trial failed' : 'circuit opened');
        }
      }
      throw err;
    }
    lastSuccessAt = now();
    breaker.success();
  }

  /**
   * Delivered messageIds waiting to be remembered. A delivery does not wait for Redis:
   * marks queue here and go out in one call while the lanes carry on (the next call takes
   * whatever queued meanwhile), and a batch's offsets are committed only once its marks
   * are written (`marksWritten`). A crash loses at most the marks of the last few
   * milliseconds, so a replay re-sends only those events.
   */
  let marks: string[] = [];
  let marking: Promise<void> | undefined;

  function markDelivered(events: Envelope[]): void {
    opts.metrics?.delivered(destId, events);
    for (const e of events) marks.push(dedupKey(e));
    marking ??= writeMarks();
  }

  async function writeMarks(): Promise<void> {
    try {
      while (marks.length > 0) {
        const keys = marks;
        marks = [];
        try {
          await opts.cache.setManyIfAbsent(keys, opts.dedupTtlMs);
        } catch (err) {
          log.warn({ err, events: keys.length }, 'could not record delivered messageIds');
        }
      }
    } finally {
      marking = undefined;
    }
  }

  async function marksWritten(): Promise<void> {
    while (marking) await marking;
  }

  /** Lane slots, shared by every partition batch in hand. */
  const slots = semaphore(Math.max(1, opts.concurrency));

  const park = opts.park;
  const parkAfterMs = opts.policy.parkAfterMs ?? 30_000;
  const parkMaxEvents = opts.policy.parkMaxEvents ?? 10_000;

  /**
   * Tries one event until it is delivered or given up on, or until `hooks.park` takes it
   * (asked after each retriable failure once the event is `parkAfterMs` old), or until
   * `hooks.keepOn` says to stop (a drainer whose lease lapsed).
   */
  async function untilDone(
    item: Pending,
    hooks: { park?: (() => Promise<boolean>) | undefined; failed?: () => Promise<void>; keepOn?: () => boolean } = {},
  ): Promise<'delivered' | 'dead' | 'parked' | 'abandoned'> {
    for (;;) {
      if (stopping.signal.aborted) throw new Error('worker stopping: the batch will be read again');
      if (hooks.keepOn && !hooks.keepOn()) return 'abandoned';
      item.firstAttemptAt ??= now();
      item.attempts++;
      try {
        await attempt([item.event]);
        markDelivered([item.event]);
        return 'delivered';
      } catch (err) {
        const e = err as DeliveryError;
        item.lastError = e;
        const retriable = isRetriable(e);
        opts.metrics?.failed(destId, retriable);
        const tooOld = now() - item.firstAttemptAt >= opts.policy.maxAgeMs;
        const tooMany = opts.policy.maxAttempts !== undefined && item.attempts >= opts.policy.maxAttempts;
        if (!retriable || tooOld || tooMany) {
          log.warn({ err: e, messageId: item.event.messageId, attempts: item.attempts, ageMs: now() - item.firstAttemptAt }, 'event dead-lettered');
          return 'dead';
        }
        opts.metrics?.retried(destId);
        await hooks.failed?.();
        // Parked only when the failure is this event's own: the destination has taken other
        // calls since it first failed. Down for everyone, nothing is parked: Kafka holds the
        // backlog, and the breaker's trials find the way back.
        if (hooks.park && now() - item.firstAttemptAt >= parkAfterMs && lastSuccessAt > item.firstAttemptAt && (await hooks.park())) return 'parked';
        log.debug({ err: e, messageId: item.event.messageId, attempts: item.attempts }, 'delivery failed: retrying');
        // An open breaker schedules the next try for every lane at once (attempt() waits
        // on it); a closed one leaves it to this event's own backoff, cut short if the
        // breaker opens and closes again meanwhile.
        if (breaker.state() === 'closed') {
          await wait(Math.max(backoffDelay(item.attempts, opts.policy.backoff), e.retryAfterMs ?? 0), recovery.signal);
        }
      }
    }
  }

  /** One user's events, in order, each retried until delivered or dead, or all parked. */
  async function lane(user: string, items: Pending[]): Promise<NewDeadLetter[]> {
    const dead: NewDeadLetter[] = [];
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      const outcome = await untilDone(item, { park: park && (() => parkRest(park, user, items.slice(i))) });
      if (outcome === 'dead') dead.push(letterOf(item));
      if (outcome === 'parked') break;
    }
    return dead;
  }

  let parkFull = false;

  /**
   * Moves a failing user's events, the failing one first, to the park: durable there
   * before the batch's offsets move on. False (the lane keeps retrying in place) when the
   * park is full or unreachable.
   */
  async function parkRest(p: Park, user: string, rest: Pending[]): Promise<boolean> {
    try {
      const { events } = await p.size();
      if (events + rest.length > parkMaxEvents) {
        if (!parkFull) log.warn({ parked: events, max: parkMaxEvents }, 'park full: failing users wait in place, holding their partitions');
        parkFull = true;
        return false;
      }
      parkFull = false;
      await p.park(
        user,
        rest.map((r) => ({ event: r.event, attempts: r.attempts, firstAttemptAt: r.firstAttemptAt, lastError: r.lastError?.message })),
      );
    } catch (err) {
      log.warn({ err }, 'could not park a failing user: it waits in place');
      return false;
    }
    opts.metrics?.parked?.(destId, rest.length);
    log.info({ messageId: rest[0]!.event.messageId, attempts: rest[0]!.attempts, events: rest.length }, 'user parked: its events retry from the park, the others flow on');
    pokeDrainer();
    return true;
  }

  // The drainer: parked users, each retried in order from the park by one process at a
  // time (its lease), a few at once. They take no lane slot, so a parked user never
  // holds back the partitions' lanes.
  const drainConcurrency = Math.max(1, Math.ceil(opts.concurrency / 4));
  const draining = new Map<string, Promise<void>>();
  const claimedAt = new Map<string, number>();
  let drainTick = new AbortController();
  const pokeDrainer = () => drainTick.abort();
  let drainLoopDone: Promise<void> | undefined;

  async function drainLoop(p: Park): Promise<void> {
    while (!stopping.signal.aborted) {
      try {
        const users = await p.claim(drainConcurrency);
        const at = now();
        for (const u of users) {
          claimedAt.set(u, at);
          if (!draining.has(u)) {
            draining.set(
              u,
              drainUser(p, u).finally(() => {
                draining.delete(u);
                claimedAt.delete(u);
              }),
            );
          }
        }
      } catch (err) {
        log.warn({ err }, 'park unreachable: parked users wait');
      }
      drainTick = new AbortController();
      await abortableSleep(1_000, AbortSignal.any([drainTick.signal, stopping.signal]));
    }
    await Promise.allSettled(draining.values());
  }

  async function drainUser(p: Park, user: string): Promise<void> {
    // Renewed every tick; past half the lease unrenewed, another process may take it over.
    const leaseHeld = () => now() - (claimedAt.get(user) ?? -Infinity) < p.leaseMs / 2;
    try {
      for (;;) {
        if (stopping.signal.aborted || !leaseHeld()) return;
        const head = await p.head(user, 100);
        if (head.length === 0) {
          if (await p.unparkIfEmpty(user)) {
            log.info('parked user drained: its events go in line again');
            return;
          }
          continue;
        }
        const seen = await opts.cache.hasMany(head.map((h) => dedupKey(h.event))).catch(() => head.map(() => false));
        for (const [i, h] of head.entries()) {
          if (seen[i]) {
            await p.remove(h.id);
            continue;
          }
          const item: Pending = { event: h.event, attempts: h.attempts, firstAttemptAt: h.firstAttemptAt, ...(h.lastError ? { lastError: new Error(h.lastError) } : {}) };
          const outcome = await untilDone(item, {
            keepOn: leaseHeld,
            failed: () => p.failed(h.id, item.attempts, item.firstAttemptAt ?? now(), item.lastError?.message ?? 'unknown error').catch(() => {}),
          });
          if (outcome === 'abandoned') return;
          if (outcome === 'delivered') {
            await marksWritten();
            await p.remove(h.id);
          } else {
            await p.deadLetter(h.id, letterOf(item));
            opts.metrics?.deadLettered(destId, 1);
          }
        }
      }
    } catch (err) {
      if (!stopping.signal.aborted) log.warn({ err }, 'draining a parked user failed: it is tried again');
    }
  }

  function letterOf(item: Pending): NewDeadLetter {
    const e = item.lastError as DeliveryError | undefined;
    return {
      destinationId: destId,
      event: item.event,
      attempts: item.attempts,
      lastError: e?.message ?? 'unknown error',
      httpStatus: e?.httpStatus,
      responseExcerpt: e?.bodyExcerpt,
      firstAttemptAt: item.firstAttemptAt ?? now(),
    };
  }

  async function handle(batch: IncomingBatch): Promise<void> {
    if (batch.heartbeat) heartbeat = batch.heartbeat;
    const dead: NewDeadLetter[] = [];
    const events: Envelope[] = [];
    for (const m of batch.messages) {
      const decoded = decodeEnvelope(m.value);
      if (decoded.ok) events.push(decoded.envelope);
      else log.error({ offset: m.offset, reason: decoded.reason }, 'poison message on a destination topic: skipped');
    }
    // Upstream is at least once: drop what this destination already got.
    let fresh = events;
    try {
      const seen = await opts.cache.hasMany(events.map(dedupKey));
      const inBatch = new Set<string>();
      fresh = events.filter((e, i) => {
        const k = dedupKey(e);
        if (seen[i] || inBatch.has(k)) return false;
        inBatch.add(k);
        return true;
      });
    } catch (err) {
      log.warn({ err }, 'dedup store unreachable: delivering without dedup');
    }
    // A parked user's events join it at the back of the park. If the park cannot say who
    // is parked, the batch fails and is read again: sending a parked user's event now
    // would pass its earlier ones.
    if (park && fresh.length > 0) {
      const byUser = new Map<string, Envelope[]>();
      for (const e of fresh) {
        const l = byUser.get(userOf(e));
        if (l) l.push(e);
        else byUser.set(userOf(e), [e]);
      }
      const parked = await park.parkedAmong([...byUser.keys()]);
      if (parked.size > 0) {
        const appended = await park.appendIfParked(new Map([...parked].map((u) => [u, byUser.get(u)!])));
        if (appended.size > 0) {
          fresh = fresh.filter((e) => !appended.has(userOf(e)));
          opts.metrics?.parked?.(destId, [...appended].reduce((n, u) => n + byUser.get(u)!.length, 0));
          pokeDrainer();
        }
      }
    }

    const lanes = new Map<string, Pending[]>();
    const toLane = (e: Envelope) => {
      let l = lanes.get(userOf(e));
      if (!l) lanes.set(userOf(e), (l = []));
      l.push({ event: e, attempts: 0, firstAttemptAt: undefined });
    };
    const size = Math.max(1, Math.min(opts.module.maxBatchSize, opts.module.batchSize?.(config) ?? opts.module.maxBatchSize));
    // One event per call: sequential chunks would send one request at a time, so every
    // event goes to its user's lane instead, and lanes run `concurrency` users at once.
    if (size === 1) for (const e of fresh) toLane(e);
    for (let i = 0; size > 1 && i < fresh.length; ) {
      // Events of users already in a lane wait behind their earlier events.
      const chunk: Envelope[] = [];
      for (; i < fresh.length && chunk.length < size; i++) {
        const e = fresh[i]!;
        if (lanes.has(userOf(e))) toLane(e);
        else chunk.push(e);
      }
      if (chunk.length === 0) continue;
      try {
        await attempt(chunk);
        markDelivered(chunk);
      } catch (err) {
        opts.metrics?.failed(destId, isRetriable(err));
        log.info({ err, events: chunk.length }, 'chunk failed: retrying per user');
        // The first try counted for every event of the chunk.
        const triedAt = now();
        for (const e of chunk) toLane(e);
        for (const l of lanes.values()) {
          for (const p of l) {
            if (p.firstAttemptAt === undefined && chunk.includes(p.event)) {
              p.firstAttemptAt = triedAt;
              p.attempts = 1;
            }
          }
        }
      }
      await heartbeat();
    }

    if (lanes.size > 0) {
      await Promise.all(
        [...lanes.values()].map(async (l) => {
          await slots.acquire();
          try {
            dead.push(...(await lane(userOf(l[0]!.event), l)));
          } finally {
            slots.release();
          }
        }),
      );
    }
    await marksWritten();
    if (dead.length > 0) {
      // Durable before the offsets move on: a dead letter is never lost.
      await opts.deadLetter(dead);
      opts.metrics?.deadLettered(destId, dead.length);
    }
  }

  return {
    async start() {
      subscription = await opts.bus.consume({
        group: opts.group,
        topics: [opts.topic],
        fromBeginning: true,
        concurrency: opts.partitionConcurrency ?? 1,
        handle,
        onError: (err) => log.warn({ err }, 'a batch failed: it will be read again'),
      });
      log.info({ topic: opts.topic, group: opts.group }, 'sink worker consuming');
      if (park) drainLoopDone = drainLoop(park);
    },
    breaker: () => breaker,
    parked: async () => (park ? park.size() : { users: 0, events: 0 }),
    async stop() {
      // Waits in backoff end now; the batch in flight fails and is read again after restart.
      stopping.abort();
      recovery.abort();
      setTimeout(() => hardStop.abort(), 10_000).unref();
      await subscription?.stop();
      await drainLoopDone;
      await park?.release().catch((err: unknown) => log.warn({ err }, 'could not give up the park leases: another process takes them over when they lapse'));
    },
  };
}

/** Whose events must stay in order: a user of a source (the partition key, core/envelope.ts). */
function userOf(e: Envelope): string {
  return eventKey(e.sourceId, e);
}

/**
 * At most `n` holders at once; waiters are served in arrival order. The lanes of every
 * partition batch in hand share one, so the destination sees at most `concurrency`
 * requests whatever the number of partitions handled at once.
 */
function semaphore(n: number): { acquire(): Promise<void>; release(): void } {
  let free = n;
  const waiting: Array<() => void> = [];
  return {
    acquire() {
      if (free > 0) {
        free--;
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => waiting.push(resolve));
    },
    release() {
      const next = waiting.shift();
      if (next) next();
      else free++;
    },
  };
}
