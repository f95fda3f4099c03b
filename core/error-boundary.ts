import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { routePath } from 'hono/route';
import { Counter } from 'prom-client';
import type { Logger } from './logger.ts';
import type { Registry } from './metrics.ts';

/**
 * Every HTTP surface's last line: an error no handler meant to answer (anything but a typed
 * 4xx, or the 503s a surface answers on purpose) is logged at error level with the route,
 * and counted in `orrery_http_unexpected_errors_total{surface,route}`, so a new 500 is
 * noticed (an alert on the counter's increase) rather than found in a client's retry log.
 * The surface still answers with its own error body; this only records.
 *
 * The route is the pattern that matched (`/api/sources/:id`), never the raw path, so the
 * counter's label values stay few whatever clients send.
 */

export const UNEXPECTED_ERRORS_METRIC = 'orrery_http_unexpected_errors_total';

export type UnexpectedErrorHandler = (err: unknown, c: Context<any>) => void;

/**
 * @example
 *   const unexpected = createErrorBoundary({ surface: 'gitops', logger: log, registry: ctx.registry });
 *   app.onError((err, c) => { if (expected(err)) return …; unexpected(err, c); return c.json({ … }, 500); });
 */
export function createErrorBoundary(opts: { surface: string; logger: Logger; registry: Registry }): UnexpectedErrorHandler {
  // Components in one process share the registry, and each creates its boundary.
  const counter =
    (opts.registry.getSingleMetric(UNEXPECTED_ERRORS_METRIC) as Counter<'surface' | 'route'> | undefined) ??
    new Counter({
      name: UNEXPECTED_ERRORS_METRIC,
      help: 'Requests answered 5xx by an error no handler expected, by surface and route pattern',
      labelNames: ['surface', 'route'],
      registers: [opts.registry],
    });
  return function unexpectedError(err, c) {
    const route = routeOf(c);
    counter.inc({ surface: opts.surface, route });
    opts.logger.error({ err, surface: opts.surface, route, method: c.req.method }, `unexpected error in ${opts.surface}: ${c.req.method} ${route} answered 5xx`);
  };
}

function routeOf(c: Context<any>): string {
  try {
    return routePath(c) || 'unmatched';
  } catch {
    // No match result (a request that never reached the router).
    return 'unmatched';
  }
}

/**
 * An `onError` for apps without error bodies of their own (the process's ops routes, Pilot's
 * UI and demo receiver): Hono's default answer (an HTTPException's own response, otherwise
 * a text 500), recording every 5xx through `unexpected`.
 *
 * @example app.onError(defaultOnError(createErrorBoundary({ surface: 'ops', logger, registry })));
 */
export function defaultOnError(unexpected: UnexpectedErrorHandler): (err: Error, c: Context<any>) => Response {
  return function answerUnhandled(err, c) {
    if (err instanceof HTTPException) {
      if (err.status >= 500) unexpected(err, c);
      return err.getResponse();
    }
    unexpected(err, c);
    return c.text('Internal Server Error', 500);
  };
}
