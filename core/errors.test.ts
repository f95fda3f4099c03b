import { describe, expect, it } from 'vitest';
import { ConfigError, InputError, isRetriable, OrreryError, rootCause } from './errors.ts';

describe('errors', () => {
  it('OrreryError carries code, retriable, status and cause', () => {
    const cause = new Error('socket closed');
    const err = new OrreryError('BUS_UNAVAILABLE', 'no ack', { retriable: true, cause, status: 503 });
    expect(err).toMatchObject({ code: 'BUS_UNAVAILABLE', retriable: true, status: 503, cause });
    expect(err).toBeInstanceOf(Error);
  });

  it('rootCause walks the cause chain and survives cycles', () => {
    const inner = new Error('inner');
    const outer = new Error('outer', { cause: new Error('mid', { cause: inner }) });
    expect(rootCause(outer)).toBe(inner);
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    (a as { cause?: unknown }).cause = b;
    expect([a, b]).toContain(rootCause(a));
  });

  it('the outermost explicit retriable flag wins', () => {
    const notRetriable = new OrreryError('X', 'x', { retriable: false });
    expect(isRetriable(new OrreryError('Y', 'y', { retriable: true, cause: notRetriable }))).toBe(true);
    expect(isRetriable(new Error('wrapper', { cause: notRetriable }))).toBe(false);
  });

  it('transient system errors are retriable; unknown ones are not', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    expect(isRetriable(new Error('wrapped', { cause: refused }))).toBe(true);
    expect(isRetriable(new Error('plain'))).toBe(false);
    expect(isRetriable('a string')).toBe(false);
  });

  it('programming errors are never retried, wherever they sit', () => {
    expect(isRetriable(new TypeError('x is undefined'))).toBe(false);
    expect(isRetriable(new OrreryError('Z', 'z', { retriable: true, cause: new ReferenceError('y') }))).toBe(false);
  });

  it('ConfigError and InputError are not retriable', () => {
    expect(isRetriable(new ConfigError('bad'))).toBe(false);
    const input = new InputError('no_user_anon_id', 'userId or anonymousId is required', 400, { index: 3 });
    expect(input).toMatchObject({ status: 400, details: { index: 3 }, retriable: false });
  });
});
