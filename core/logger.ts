import { pino, type Logger, type LoggerOptions, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Paths that must never reach a log line: write keys, credentials, auth headers and
 * connection strings (which carry passwords).
 */
export const REDACT_PATHS = [
  'writeKey',
  '*.writeKey',
  'writeKeys',
  '*.writeKeys',
  '*.*.writeKeys',
  'password',
  '*.password',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'req.headers.authorization',
  'headers.cookie',
  'req.headers.cookie',
  'databaseUrl',
  'redisUrl',
];

/**
 * The one way to make a logger: JSON lines on stdout (or the given stream), secrets
 * redacted, errors under `err`. Stages take `logger.child({ component })`.
 *
 * @example
 *   const log = createLogger({ level: config.log.level }).child({ component: 'ingest' });
 *   log.info({ port }, 'listening');
 */
export function createLogger(opts: { level?: string; name?: string } = {}, stream?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    name: opts.name ?? 'orrery',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    serializers: { err: pino.stdSerializers.err },
  };
  return stream ? pino(options, stream) : pino(options);
}

/** Replaces the password in a connection URL, so it can be logged. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = 'redacted';
    return u.toString();
  } catch {
    return '[unparseable url]';
  }
}
