import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hashWriteKey, hashWriteKeySync, keyIdOf } from './write-keys.ts';

describe('write keys', () => {
  it('hash to sha256:<hex> of the UTF-8 bytes, the same with Web Crypto and node:crypto', async () => {
    for (const key of ['wk_0123456789', 'clé-ünïcödé', '']) {
      const expected = `sha256:${createHash('sha256').update(Buffer.from(key, 'utf8')).digest('hex')}`;
      expect(await hashWriteKey(key)).toBe(expected);
      expect(hashWriteKeySync(key)).toBe(expected);
    }
  });

  it('are shown by the first 12 hex digits of their hash', () => {
    expect(keyIdOf(hashWriteKeySync('wk_0123456789'))).toBe(hashWriteKeySync('wk_0123456789').slice(7, 19));
    expect(keyIdOf(hashWriteKeySync('wk_0123456789'))).toMatch(/^[0-9a-f]{12}$/);
  });
});
