import type { IncomingMessage } from '../../core/bus/types.ts';
import { decodeEnvelope, type Envelope } from '../../core/envelope.ts';
import { dlq, ok, type StepResult } from '../result.ts';

/** Bytes → envelope. A value that is not a valid envelope is poison: to the DLQ, never retried. */
export function parse(message: IncomingMessage): StepResult<Envelope> {
  const decoded = decodeEnvelope(message.value);
  return decoded.ok ? ok(decoded.envelope) : dlq(decoded.reason, decoded.error);
}
