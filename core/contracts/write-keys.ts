import { createHash } from 'node:crypto';

/**
 * Write keys, as every stage stores and compares them: never the key, only
 * `sha256:<hex SHA-256 of its UTF-8>`; a key id (what Pilot shows) is the first 12 hex
 * digits. Ingest hashes with Web Crypto (hashWriteKey), so it runs as a plain fetch handler
 * on any runtime; the control plane and Pilot hash inside synchronous code
 * (hashWriteKeySync). Both give the same text.
 */
const PREFIX = 'sha256:';

/** @example await hashWriteKey('wk_123') // 'sha256:…' */
export async function hashWriteKey(writeKey: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(writeKey));
  let hex = '';
  for (const byte of new Uint8Array(digest)) hex += byte.toString(16).padStart(2, '0');
  return `${PREFIX}${hex}`;
}

/** The same as hashWriteKey, synchronously (node:crypto). */
export function hashWriteKeySync(writeKey: string): string {
  return `${PREFIX}${createHash('sha256').update(writeKey, 'utf8').digest('hex')}`;
}

/** The id a key is shown by: the first 12 hex digits of its hash. */
export function keyIdOf(hash: string): string {
  return hash.slice(PREFIX.length, PREFIX.length + 12);
}
