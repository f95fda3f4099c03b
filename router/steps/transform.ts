import { createHash } from 'node:crypto';
import type { Transform } from '../../core/control-plane.ts';
import type { Envelope } from '../../core/envelope.ts';
import { deletePath, getPath, hasPath, setPath } from '../paths.ts';

/**
 * Applies a route's transforms in order and returns a new envelope; the input, shared by
 * every destination of the event, is never changed. A transform on an absent field does
 * nothing (except `set`).
 */
export function applyTransforms(env: Envelope, transforms: readonly Transform[]): Envelope {
  let out = env as Envelope & Record<string, unknown>;
  for (const t of transforms) {
    switch (t.op) {
      case 'rename':
        if (hasPath(out, t.from)) out = deletePath(setPath(out, t.to, getPath(out, t.from)), t.from);
        break;
      case 'drop':
        out = deletePath(out, t.field);
        break;
      case 'hash':
        if (hasPath(out, t.field) && getPath(out, t.field) != null) {
          const value = getPath(out, t.field);
          const text = typeof value === 'string' ? value : JSON.stringify(value);
          out = setPath(out, t.field, createHash('sha256').update(`${t.salt ?? ''}${text}`).digest('hex'));
        }
        break;
      case 'mask':
        if (hasPath(out, t.field) && getPath(out, t.field) != null) {
          const value = String(getPath(out, t.field));
          const keep = Math.min(t.keep, value.length);
          out = setPath(out, t.field, '*'.repeat(value.length - keep) + value.slice(value.length - keep));
        }
        break;
      case 'set':
        out = setPath(out, t.field, t.value);
        break;
    }
  }
  return out;
}
