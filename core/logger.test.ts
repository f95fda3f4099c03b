import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, redactUrl } from './logger.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()));
      cb();
    },
  });
  return { lines, stream };
}

describe('logger', () => {
  it('writes JSON lines with level labels and a component from child()', () => {
    const { lines, stream } = capture();
    createLogger({ level: 'info' }, stream).child({ component: 'ingest' }).info({ port: 8080 }, 'listening');
    expect(lines[0]).toMatchObject({ level: 'info', component: 'ingest', port: 8080, msg: 'listening', name: 'orrery' });
  });

  it('never writes write keys, auth headers or passwords', () => {
    const { lines, stream } = capture();
    createLogger({}, stream).info(
      { writeKey: 'wk_live_123', req: { headers: { authorization: 'Basic abc' } }, source: { writeKey: 'wk2' }, password: 'pw' },
      'event',
    );
    const text = JSON.stringify(lines[0]);
    for (const secret of ['wk_live_123', 'Basic abc', 'wk2', '"pw"']) expect(text).not.toContain(secret);
  });

  it('redactUrl hides the password of a connection string', () => {
    expect(redactUrl('postgres://orrery:s3cret@127.0.0.1:5432/orrery')).toBe('postgres://orrery:redacted@127.0.0.1:5432/orrery');
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
  });
});
