/**
 * Whether a consumer is getting anywhere. A handler that throws has its batch delivered
 * again; if it throws every time (a refused write, a poison batch), the partition never
 * moves while the process looks alive. The adapters record each partition's failures
 * here, and the stage decides from them when it is stalled (`stalledPartitions`).
 */

/** A partition whose current batch has failed, with no success since. */
export interface PartitionFailure {
  topic: string;
  partition: number;
  /** First offset of the batch that keeps failing. */
  offset: string;
  /** Failures of this batch in a row. */
  failures: number;
  /** When the first of them happened (ms since epoch). */
  since: number;
  /** The last error's message. */
  error: string;
}

export interface ConsumerProgress {
  failing: PartitionFailure[];
}

export interface ProgressTracker {
  /** The handler threw on this partition's batch starting at `offset`. */
  failed(topic: string, partition: number, offset: string, err: unknown): void;
  /** The partition's batch was handled and committed, or the partition left this member. */
  clear(topic: string, partition: number): void;
  /** Keeps only the partitions this member still owns (after a rebalance). */
  retain(owns: (topic: string, partition: number) => boolean): void;
  progress(): ConsumerProgress;
}

/**
 * @example
 *   const tracker = createProgressTracker();
 *   try { await handle(batch) } catch (err) { tracker.failed(batch.topic, batch.partition, first, err); throw err }
 *   tracker.clear(batch.topic, batch.partition);
 */
export function createProgressTracker(now: () => number = Date.now): ProgressTracker {
  const failing = new Map<string, PartitionFailure>();
  const key = (topic: string, partition: number) => `${partition}\u0000${topic}`;
  return {
    failed(topic, partition, offset, err) {
      const prev = failing.get(key(topic, partition));
      const error = err instanceof Error ? err.message : String(err);
      // Another first offset is another batch (the partition did move): count afresh.
      if (prev && prev.offset === offset) Object.assign(prev, { failures: prev.failures + 1, error });
      else failing.set(key(topic, partition), { topic, partition, offset, failures: 1, since: now(), error });
    },
    clear(topic, partition) {
      failing.delete(key(topic, partition));
    },
    retain(owns) {
      for (const [k, f] of failing) if (!owns(f.topic, f.partition)) failing.delete(k);
    },
    progress() {
      return { failing: [...failing.values()].map((f) => ({ ...f })) };
    },
  };
}

export interface StallPolicy {
  /** How long a batch keeps failing before its partition counts as stalled. */
  afterMs: number;
  /** And at least this many failures in a row (one slow failure is not a stall). Default 3. */
  minFailures?: number;
}

/**
 * The partitions that stopped for good: the same batch failed at least `minFailures`
 * times in a row, the first of them `afterMs` ago or more, and nothing succeeded since.
 *
 * @example stalledPartitions(sub.progress(), { afterMs: 60_000 }, Date.now())
 */
export function stalledPartitions(progress: ConsumerProgress, policy: StallPolicy, now: number): PartitionFailure[] {
  const min = policy.minFailures ?? 3;
  return progress.failing.filter((f) => f.failures >= min && now - f.since >= policy.afterMs);
}
