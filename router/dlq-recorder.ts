import type { Bus, Subscription } from '../core/bus/types.ts';
import type { Logger } from '../core/logger.ts';
import type { Store } from '../core/store/types.ts';
import { ensureRouterDeadLetterTable, recordRouterDeadLetters } from './dead-letters.ts';

export interface DlqRecorder {
  /** The last error, until a batch is recorded again. */
  failure(): string | undefined;
  stop(): Promise<void>;
}

/**
 * Copies every message of the DLQ topic into the store (router_dead_letters), where Pilot
 * lists and replays it. Its own consumer group, from the beginning, so the letters written
 * before it first ran are recorded too. The bus commits a batch's offsets only after the
 * insert resolves, and the insert skips messages already recorded, so a crash in between
 * neither loses a letter nor writes one twice.
 *
 * @example const recorder = await startDlqRecorder({ bus, store, topic: topics.dlq, group: 'orrery-router-dlq-recorder', logger });
 */
export async function startDlqRecorder(opts: {
  bus: Bus;
  store: Store;
  topic: string;
  group: string;
  logger: Logger;
  onRecorded?: (n: number) => void;
}): Promise<DlqRecorder> {
  const log = opts.logger;
  // Migrated before consuming: a store that cannot take the table fails the start, loudly.
  await ensureRouterDeadLetterTable(opts.store);
  let failure: string | undefined;
  const subscription: Subscription = await opts.bus.consume({
    group: opts.group,
    topics: [opts.topic],
    fromBeginning: true,
    handle: async function recordBatch(batch) {
      const n = await recordRouterDeadLetters(opts.store, batch.messages);
      if (failure) log.info('recording dead letters again');
      failure = undefined;
      if (n > 0) {
        opts.onRecorded?.(n);
        log.info({ recorded: n, partition: batch.partition }, 'router dead letters recorded');
      }
    },
    onError: (err) => {
      failure = String((err as Error).message ?? err);
      log.error({ err }, 'recording dead letters failed: the batch will be read again');
    },
  });
  return {
    failure: () => failure,
    stop: () => subscription.stop(),
  };
}
