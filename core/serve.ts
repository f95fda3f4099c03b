import { serve } from '@hono/node-server';
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
