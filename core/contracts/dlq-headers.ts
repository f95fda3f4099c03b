/**
 * The headers that tell a dead letter's story on the DLQ topic: written by the router
 * (router/handler.ts) beside the raw bytes, read back by the recorder that copies the topic
 * into the store (router/dead-letters.ts), and by anyone reading the topic itself.
 */
export const DLQ_HEADER = {
  stage: 'x-orrery-stage',
  reason: 'x-orrery-reason',
  error: 'x-orrery-error',
  originalTopic: 'x-orrery-original-topic',
  originalPartition: 'x-orrery-original-partition',
  originalOffset: 'x-orrery-original-offset',
  configVersion: 'x-orrery-config-version',
  /** On a dead letter written without its value (too large even alone): the bytes it had. */
  valueOmitted: 'x-orrery-value-omitted',
} as const;

/** The error text kept on a dead letter, at most. */
const MAX_ERROR_CHARS = 1000;

export interface DlqStory {
  stage: string;
  reason: string;
  error: string;
  originalTopic: string;
  originalPartition: number;
  /** A Kafka offset, as a decimal string (64-bit). */
  originalOffset: string;
  configVersion: number;
}

/** @example dlqHeaders({ stage: 'router', reason: 'unknown_source', error: '…', originalTopic, originalPartition: 0, originalOffset: '41', configVersion: 3 }) */
export function dlqHeaders(s: DlqStory): Record<string, string> {
  return {
    [DLQ_HEADER.stage]: s.stage,
    [DLQ_HEADER.reason]: s.reason,
    [DLQ_HEADER.error]: s.error.slice(0, MAX_ERROR_CHARS),
    [DLQ_HEADER.originalTopic]: s.originalTopic,
    [DLQ_HEADER.originalPartition]: String(s.originalPartition),
    [DLQ_HEADER.originalOffset]: s.originalOffset,
    [DLQ_HEADER.configVersion]: String(s.configVersion),
  };
}
