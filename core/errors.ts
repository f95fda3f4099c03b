/**
 * Typed errors shared by every stage. Each carries a machine-readable `code`, whether a
 * retry can help (`retriable`), and the `cause` it wraps. Retry decisions look at the root
 * cause, and programming errors (TypeError, ReferenceError, …) are never retried.
 *
 * @example
 *   throw new OrreryError('BUS_UNAVAILABLE', 'kafka did not acknowledge', { retriable: true, cause: err });
 */
export class OrreryError extends Error {
  readonly code: string;
  readonly retriable: boolean;
  /** HTTP status to answer with when this error reaches an HTTP edge. */
  readonly status: number;
  /** Extra machine-readable detail (e.g. the index of the offending batch item). */
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: string,
    message: string,
    opts: { retriable?: boolean; cause?: unknown; status?: number; details?: Record<string, unknown> } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'OrreryError';
    this.code = code;
    this.retriable = opts.retriable ?? false;
    this.status = opts.status ?? 500;
    this.details = opts.details;
  }
}

/** Bad configuration: fail fast at start, never retried. */
export class ConfigError extends OrreryError {
  constructor(message: string, opts: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super('CONFIG_INVALID', message, { ...opts, retriable: false });
    this.name = 'ConfigError';
  }
}

/** Input from a client that we refuse: answered with a 4xx and never retried. */
export class InputError extends OrreryError {
  constructor(code: string, message: string, status = 400, details?: Record<string, unknown>) {
    super(code, message, { retriable: false, status, details });
    this.name = 'InputError';
  }
}

const PROGRAMMING_ERRORS: ReadonlyArray<new (...args: never[]) => Error> = [TypeError, ReferenceError, SyntaxError, RangeError];

/** True for the built-in errors that mean a bug, not a passing fault. */
function isProgrammingError(err: unknown): boolean {
  return err instanceof Error && PROGRAMMING_ERRORS.some((E) => err.constructor === E);
}

/** The error and its `cause` chain, outermost first. Guards against cycles. */
function causeChain(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e: unknown = err; e !== undefined && !chain.includes(e); e = e instanceof Error ? e.cause : undefined) {
    chain.push(e);
  }
  return chain;
}

/** Follows `cause` links down to the innermost error. */
export function rootCause(err: unknown): unknown {
  return causeChain(err).at(-1);
}

/**
 * Whether retrying can help. The outermost explicit `retriable` flag in the chain (ours, or
 * kafkajs's own) wins; otherwise the root cause's system error code decides. Programming
 * errors never retry, wherever they sit in the chain.
 */
export function isRetriable(err: unknown): boolean {
  const chain = causeChain(err);
  if (chain.some(isProgrammingError)) return false;
  for (const e of chain) {
    const flag = (e as { retriable?: unknown } | null)?.retriable;
    if (typeof flag === 'boolean') return flag;
  }
  const code = (chain.at(-1) as { code?: unknown } | null)?.code;
  return typeof code === 'string' && TRANSIENT_SYSCALL_CODES.has(code);
}

const TRANSIENT_SYSCALL_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);
