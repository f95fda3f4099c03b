import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Imports the library in a fresh node, eagerly or through the importer, and reports what a strict client does. */
function probe(how: 'eager' | 'importer'): { compiled: number; invalid: string; valid: string } {
  const script = `
    const m = ${how === 'eager' ? "await import('@platformatic/kafka')" : "await (await import('./core/bus/platformatic-import.ts')).importPlatformaticKafka()"};
    const compiled = m.ajv._cache.size;
    const attempt = (opts) => { try { new m.Producer({ clientId: 'probe', bootstrapBrokers: ['127.0.0.1:1'], strict: true, ...opts }).close(); return 'accepted'; } catch (e) { return e.message; } };
    console.log(JSON.stringify({ compiled, invalid: attempt({ retries: -5 }), valid: attempt({ retries: 3 }) }));
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()!) as { compiled: number; invalid: string; valid: string };
}

describe('importPlatformaticKafka', () => {
  it('defers compiling the option schemas, and a strict client still validates as the library does', () => {
    const eager = probe('eager');
    const deferred = probe('importer');
    // The library compiles ~38 option schemas on import; through the importer none of them.
    expect(eager.compiled - deferred.compiled).toBeGreaterThanOrEqual(30);
    expect(deferred.invalid).toBe(eager.invalid);
    expect(deferred.invalid).toMatch(/\/options\/retries must be >= 0/);
    expect(deferred.valid).toBe('accepted');
  });
});
