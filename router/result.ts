/**
 * What a router step decides for one event. Steps are pure and only return these; one
 * result handler performs the side effects (produce, DLQ, metrics, dedup marks).
 */
export type StepResult<T> =
  | { kind: 'ok'; value: T }
  | { kind: 'drop'; reason: string }
  | { kind: 'dlq'; reason: string; error: string };

export const ok = <T>(value: T): StepResult<T> => ({ kind: 'ok', value });
export const drop = (reason: string): StepResult<never> => ({ kind: 'drop', reason });
export const dlq = (reason: string, error: unknown): StepResult<never> => ({
  kind: 'dlq',
  reason,
  error: error instanceof Error ? error.message : String(error),
});
