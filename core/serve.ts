import { serve } from '@hono/node-server';
import type { Context, Hono } from 'hono';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Logger } from './logger.ts';

export interface RunningServer {
  port: number;
  /** Stops accepting connections and resolves once in-flight requests have answered. */
  close(): Promise<void>;
}

/**
 * Serves a fetch handler (a Hono app's `fetch`) on Node. The app itself never listens:
 * this is the only place that does.
 *
 * @example const server = await listen({ fetch: app.fetch, host: '0.0.0.0', port: 8080, logger });
 */
export function listen(opts: {
  fetch: (req: Request, ...rest: never[]) => Response | Promise<Response>;
  host: string;
  port: number;
  logger: Logger;
  /** A request not received whole within this long is answered 408 (Node's requestTimeout). Default 30 s. */
  requestTimeoutMs?: number;
  /** The same for the headers alone (Node's headersTimeout). Default 10 s. */
  headersTimeoutMs?: number;
}): Promise<RunningServer> {
  const requestTimeout = opts.requestTimeoutMs ?? 30_000;
  const headersTimeout = Math.min(opts.headersTimeoutMs ?? 10_000, requestTimeout);
  // Node checks the timeouts every connectionsCheckingInterval (30 s by default), which
  // would let a slow request live up to 30 s past its timeout.
  const serverOptions = { requestTimeout, headersTimeout, connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(headersTimeout / 2))) };
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: opts.fetch as never, hostname: opts.host, port: opts.port, serverOptions }, (info: AddressInfo) => {
      opts.logger.info({ host: info.address, port: info.port }, 'listening');
      resolve({
        port: info.port,
        close: () =>
          new Promise<void>((done) => {
            // close() waits for in-flight requests; idle keep-alive sockets would hold it open.
            (server as Server).close(() => done());
            (server as Server).closeIdleConnections?.();
          }),
      });
    }) as Server;
    server.once('error', reject);
  });
}

/**
 * Runs `stop` once on SIGTERM or SIGINT, then exits. A second signal exits at once. Stop
 * hooks drain: stop taking work, finish what is in flight, flush, close connections.
 */
export function onShutdown(logger: Logger, stop: () => Promise<void>, opts: { timeoutMs?: number } = {}): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down: draining in-flight work');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs: opts.timeoutMs ?? 30_000 }, 'drain timed out: exiting');
      process.exit(1);
    }, opts.timeoutMs ?? 30_000);
    timer.unref();
    stop().then(
      () => {
        logger.info('stopped cleanly');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

/** A Hono route pattern (`/v1/pixel/:type`, `/api/x/:id{[0-9]+}`, `/static/*`) as a RegExp. */
function routePattern(path: string): RegExp {
  let re = '';
  for (const part of path.split(/(:[A-Za-z0-9_]+(?:\{[^}]*\})?\??|\*)/)) {
    if (part === '*') re += '.*';
    else if (part.startsWith(':')) {
      const custom = /\{([^}]*)\}/.exec(part)?.[1];
      re += part.endsWith('?') ? `(?:${custom ?? '[^/]+'})?` : `(?:${custom ?? '[^/]+'})`;
    } else re += part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}/?$`);
}

/**
 * The app's answer to a request no route took: 405 with an `Allow` header when the path is
 * served with other methods (as HTTP asks, and as OpenAPI clients and fuzzers expect), 404
 * otherwise; both in the error body every surface uses. Install it last, once every
 * route is registered: `app.notFound(unmatchedRoutes(app))`.
 */
export function unmatchedRoutes(app: Hono): (c: Context) => Response {
  let table: Array<{ pattern: RegExp; method: string }> | undefined;
  return function notFoundOrNotAllowed(c) {
    // Built on first use: by then every component has registered its routes.
    table ??= app.routes.filter((r) => r.method !== 'ALL').map((r) => ({ pattern: routePattern(r.path), method: r.method }));
    const allowed = new Set(table.filter((r) => r.pattern.test(c.req.path)).map((r) => r.method));
    if (allowed.size > 0) {
      if (allowed.has('GET')) allowed.add('HEAD');
      const allow = [...allowed].sort().join(', ');
      return c.json({ success: false, code: 'method_not_allowed', message: `${c.req.method} is not allowed on ${c.req.path} (allowed: ${allow})` }, 405, { allow });
    }
    return c.json({ success: false, code: 'not_found', message: `no route for ${c.req.method} ${c.req.path}` }, 404);
  };
}
