import type { Logger } from './logger.ts';

/**
 * A trace of refused webhooks. A registry sent with the wrong token gets 401 and retries
 * forever (CNCF Distribution does), so a token mix-up would only move a counter. Each
 * refusal is logged once per receiver and reason per window (a warn line, with how many
 * more were refused in the window before), and the recent ones are kept, aggregated, for
 * Pilot to show. Only the receiver, the reason code and the status are kept: never a
 * header, a token or a body.
 */

export interface Refusal {
  /** Which endpoint refused: `registry/distribution`, `git`, `pilot/demo-webhook`. */
  receiver: string;
  /** The refusal's code, as answered (`bad_token`, `bad_signature`, `invalid_payload`, …). */
  reason: string;
  status: number;
}

export interface RefusalSummary extends Refusal {
  /** Refusals of this receiver and reason since it was first seen (or evicted and seen again). */
  count: number;
  /** ms since epoch. */
  firstAt: number;
  lastAt: number;
}

export interface RefusalLog {
  record(refusal: Refusal): void;
  /** The kept receiver-and-reason pairs, most recent first. */
  list(): RefusalSummary[];
  readonly windowMs: number;
}

/**
 * @example
 *   const refusals = createRefusalLog({ logger });
 *   refusals.record({ receiver: 'registry/distribution', reason: 'bad_token', status: 401 });
 */
export function createRefusalLog(opts: { logger: Logger; windowMs?: number; maxKept?: number; now?: () => number }): RefusalLog {
  const windowMs = opts.windowMs ?? 60_000;
  // The receiver name can come from a URL: the kept pairs are bounded whatever is sent.
  const maxKept = opts.maxKept ?? 100;
  const now = opts.now ?? Date.now;
  const log = opts.logger.child({ component: 'webhooks' });
  const kept = new Map<string, RefusalSummary & { loggedAt: number; unlogged: number }>();

  return {
    windowMs,
    record(r) {
      const at = now();
      const key = `${r.receiver}\u0000${r.reason}`;
      let entry = kept.get(key);
      if (!entry) {
        if (kept.size >= maxKept) {
          const oldest = [...kept.entries()].reduce((a, b) => (b[1].lastAt < a[1].lastAt ? b : a));
          kept.delete(oldest[0]);
        }
        entry = { ...r, count: 0, firstAt: at, lastAt: at, loggedAt: -Infinity, unlogged: 0 };
        kept.set(key, entry);
      }
      entry.count++;
      entry.lastAt = at;
      entry.status = r.status;
      if (at - entry.loggedAt < windowMs) {
        entry.unlogged++;
        return;
      }
      log.warn(
        { receiver: r.receiver, reason: r.reason, status: r.status, suppressed: entry.unlogged, windowMs },
        `webhook refused: ${r.receiver} answered ${r.status} ${r.reason}` +
          (entry.unlogged > 0 ? ` (and ${entry.unlogged} more refused since the last line)` : '') +
          `; logged once per ${Math.round(windowMs / 1000)} s per receiver and reason`,
      );
      entry.loggedAt = at;
      entry.unlogged = 0;
    },
    list() {
      return [...kept.values()]
        .sort((a, b) => b.lastAt - a.lastAt)
        .map(({ receiver, reason, status, count, firstAt, lastAt }) => ({ receiver, reason, status, count, firstAt, lastAt }));
    },
  };
}
