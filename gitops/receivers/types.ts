import type { z } from 'zod';
import type { ReceiverRequest, ReceiverResult } from '../api/types.ts';

/** The registries Orrery takes push webhooks from, as they appear in the receiver's URL. */
export const RECEIVER_PROVIDERS = ['distribution', 'dockerhub', 'harbor', 'quay', 'ghcr', 'generic'] as const;
export type ReceiverProvider = (typeof RECEIVER_PROVIDERS)[number];

/**
 * A registry webhook receiver: one module per provider under gitops/receivers/, registered
 * in gitops/receivers/index.ts. Pure: no I/O, no clock but `req.now`. The HTTP layer reads
 * the raw body and headers, finds the receiver's settings, and calls `receive`.
 */
export interface Receiver<S> {
  provider: ReceiverProvider;
  /** Validates the receiver's configured settings (its token or secret) at start-up. */
  settingsSchema: z.ZodType<S>;
  /**
   * Verifies the delivery (before parsing anything) and turns it into image pushes.
   * Throws an InputError to refuse it: 401 for a missing or wrong token/signature, 400 for
   * an oversized or unparseable body or an invalid image reference.
   */
  receive(req: ReceiverRequest, settings: S): ReceiverResult;
}
